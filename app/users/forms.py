"""Forms of the users pages; the field rules themselves live in the users service."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    HiddenField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.validators import InputRequired, Optional, Regexp

from app.models import ROLES

ROLE_CHOICES = [SelectChoice(role, role.capitalize()) for role in ROLES]


class UserForm(FlaskForm):
    """The fields an admin sets on create and edit (validated by ``app.users.service``)."""

    username = StringField("Username", render_kw={"maxlength": 32, "autocomplete": "off"})
    email = StringField("Email", render_kw={"type": "email", "maxlength": 254})
    role = SelectField("Role", choices=ROLE_CHOICES, default="user")
    active = BooleanField("Active", default=True)

    def service_data(self) -> dict:
        """The submitted values as the service expects them."""
        data = {
            "username": (self.username.data or "").strip(),
            "email": (self.email.data or "").strip(),
            "role": self.role.data,
            "active": bool(self.active.data),
        }
        if self.password.data:
            data["password"] = self.password.data
        return data

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        """Show a service UserError next to the matching fields (others on the form)."""
        for name, messages in errors.items():
            field = self._fields.get(name)
            target = field.errors if field is not None else self.form_errors
            target.extend(messages)


class CreateUserForm(UserForm):
    """New user: a password is required (the service says so when it is missing)."""

    password = PasswordField("Password", render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Create user")

    def service_data(self) -> dict:
        data = super().service_data()
        data.setdefault("password", "")
        return data


class EditUserForm(UserForm):
    """Edit a user; ``version`` is the version the admin saw when the form was opened."""

    password = PasswordField(
        "New password",
        description="Leave blank to keep the current password.",
        render_kw={"autocomplete": "new-password"},
    )
    version = HiddenField(validators=[InputRequired(), Regexp(r"^\d{1,9}$")])
    submit = SubmitField("Save changes")


class ConfirmForm(FlaskForm):
    """The delete confirmation: the CSRF token and the version the admin was shown
    (optional: without it the newest row is deleted)."""

    version = HiddenField(validators=[Optional(), Regexp(r"^\d{1,9}$")])
    submit = SubmitField("Delete")


class RevertForm(FlaskForm):
    """Revert a user to one change of its history (``cursor``); ``version`` is the user's
    version the history page showed, empty for a deleted user."""

    cursor = HiddenField(validators=[InputRequired(), Regexp(r"^\d{1,18}$")])
    version = HiddenField(validators=[Regexp(r"^\d{0,9}$")])
    submit = SubmitField("Revert to this")


class ImportForm(FlaskForm):
    """Upload a CSV file of users to create or update."""

    file = FileField("CSV file", validators=[FileRequired()],
                     render_kw={"accept": ".csv,text/csv"})
    submit = SubmitField("Check and import")
