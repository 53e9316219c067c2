"""The login form."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=32)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    remember = BooleanField("Remember me")
    submit = SubmitField("Log in")


class AccountForm(FlaskForm):
    """Change one's own email and/or password; the current password is always asked."""

    email = StringField("Email", render_kw={"type": "email", "maxlength": 254})
    new_password = PasswordField(
        "New password", description="Leave blank to keep your password.",
        validators=[Length(max=1024)], render_kw={"autocomplete": "new-password"})
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=1024)],
        render_kw={"autocomplete": "current-password"})
    submit = SubmitField("Save")


class RevokeForm(FlaskForm):
    """End every other login session and revoke every API token (CSRF only)."""

    submit = SubmitField("Log out everywhere else and revoke my API tokens")
