"""Stub."""


def disconnect_user(user_id: int) -> None:
    pass
