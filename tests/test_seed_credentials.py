"""``flask seed --if-empty`` (what ``make run`` calls) shows a saved admin password only
while it still works."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import User
from app.users.service import update_user


def test_a_changed_admin_password_is_not_shown_again(app: Flask, runner, tmp_path: Path):
    app.instance_path = str(tmp_path)
    first = runner.invoke(args=["seed", "--if-empty", "--count", "1"])
    password = first.stdout.split("admin / ")[1].split()[0]
    still = runner.invoke(args=["seed", "--if-empty"])
    assert f"admin / {password}" in still.stdout  # unchanged: shown

    admin = db.session.scalar(select(User).filter_by(username="admin"))
    update_user(admin, {"password": "changed-since-seed"}, None)
    again = runner.invoke(args=["seed", "--if-empty"])
    assert again.exit_code == 0
    assert password not in again.stdout and "password was changed" in again.stdout
    assert "other demo users share the password" in again.stdout
