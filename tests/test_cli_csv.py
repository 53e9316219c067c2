"""``flask users export`` and ``flask users import``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import func, select

from app.extensions import db
from app.models import User, UserChange
from tests.conftest import BOTH_DATABASES, PASSWORD

pytestmark = BOTH_DATABASES


def snapshot() -> list[tuple]:
    db.session.expire_all()
    return [(u.id, u.username, u.email, u.role, u.active, u.version)
            for u in db.session.scalars(select(User).order_by(User.id))]


def changes() -> int:
    return db.session.scalar(select(func.count()).select_from(UserChange))


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "users.csv"
    path.write_text(text)
    return str(path)


def test_export_with_filters_to_stdout(runner, admin, make_user):
    make_user("alice")
    make_user("Zoe", role="admin", active=False)
    result = runner.invoke(args=["users", "export", "--role", "admin", "--sort", "-username"])
    assert result.exit_code == 0, result.output
    header, *rows = csv.reader(io.StringIO(result.stdout))
    assert header[:5] == ["id", "username", "email", "role", "active"]
    assert [(r[1], r[4]) for r in rows] == [("Zoe", "false"), ("admin", "true")]
    bad = runner.invoke(args=["users", "export", "--sort", "password"])
    assert bad.exit_code != 0 and "sort" in bad.output


def test_import_creates_and_updates_in_one_go(runner, admin, make_user, tmp_path):
    alice = make_user("alice")
    path = write(tmp_path, "id,username,email,role,active,password\n"
                           f"{alice.id},alice,alice@new.example,admin,true,\n"
                           ",carol,Carol@Example.com,,,long-enough-pw\n"
                           ",dave,dave@example.com,user,false,\n")
    result = runner.invoke(args=["users", "import", path])
    assert result.exit_code == 0, result.output
    assert "created 2, updated 1" in result.stdout
    db.session.expire_all()
    assert db.session.get(User, alice.id).email == "alice@new.example"
    carol = db.session.scalar(select(User).filter_by(username="carol"))
    assert carol.email == "carol@example.com" and carol.check_password("long-enough-pw")
    dave = db.session.scalar(select(User).filter_by(username="dave"))
    assert dave.active is False and dave.password_hash is None
    change = db.session.scalar(select(UserChange).order_by(UserChange.cursor.desc()))
    assert change.origin == "cli"


def test_an_export_imports_back_unchanged(runner, admin, make_user, tmp_path):
    make_user("alice")
    make_user("-A1", email="=cmd|'/Ccalc'!A0@example.com")  # formulas to a spreadsheet
    make_user("quote", email="'=not.a.formula@example.com")
    before = snapshot()
    exported = runner.invoke(args=["users", "export"]).stdout
    result = runner.invoke(args=["users", "import", write(tmp_path, exported)])
    assert result.exit_code == 0, result.output
    assert snapshot() == before


def test_an_export_defuses_formulas_for_spreadsheets(runner, admin, make_user):
    make_user("-A1", email="+1@example.com")
    make_user("bob", email="=cmd|'/ccalc'!a0@example.com")
    _, *rows = csv.reader(io.StringIO(runner.invoke(args=["users", "export"]).stdout))
    cells = {cell for row in rows for cell in row}
    assert {"'-A1", "'+1@example.com", "'=cmd|'/ccalc'!a0@example.com"} <= cells
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)


def test_import_reports_every_bad_line_and_writes_nothing(runner, admin, make_user,
                                                          tmp_path):
    alice = make_user("alice")
    make_user("bob")
    before, logged = snapshot(), changes()
    path = write(tmp_path, "id,username,email,role,active,version\n"
                           ",carol,carol@example.com,,,\n"       # 2: fine alone
                           ",x,bad-email,,,\n"                   # 3: both fields bad
                           ",CAROL,other@example.com,,,\n"       # 4: duplicate in the file
                           ",erin,bob@example.com,,,\n"          # 5: email of bob
                           "99999,ghost,ghost@example.com,,,\n"  # 6: no such id
                           f"{alice.id},alice,alice@example.com,root,maybe,\n"  # 7
                           f"{alice.id + 0},alice,alice@example.com,,,7\n")     # 8
    result = runner.invoke(args=["users", "import", path])
    assert result.exit_code != 0
    lines = {int(line.split(":")[0].split()[1]) for line in result.stderr.splitlines()
             if line.startswith("line ")}
    assert lines == {3, 4, 5, 6, 7, 8}
    assert "the same username as line 2" in result.stderr
    assert "nothing was written" in result.stderr
    assert snapshot() == before and changes() == logged


def test_import_keeps_an_active_admin(runner, admin, tmp_path):
    path = write(tmp_path, f"id,username,email,active\n{admin.id},admin,admin@example.com,false\n")
    result = runner.invoke(args=["users", "import", path])
    assert result.exit_code != 0 and "no active admin" in result.stderr
    assert db.session.get(User, admin.id).active is True
    assert db.session.get(User, admin.id).check_password(PASSWORD)


def test_import_refuses_a_bad_header(runner, admin, tmp_path):
    for text in ("", "name,mail\nx,y\n", "username,email,secret\nabc,a@b.example,1\n"):
        result = runner.invoke(args=["users", "import", write(tmp_path, text)])
        assert result.exit_code != 0 and "line 1" in result.stderr, text
