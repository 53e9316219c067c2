from tests.conftest import BOTH_DATABASES, login


@BOTH_DATABASES
def test_login_then_users_page(client, admin):
    assert login(client, "admin").status_code == 302
    assert client.get("/").status_code == 200
