from __future__ import annotations

import re
from datetime import timedelta

from django import forms

from apikeys.services import DEFAULT_VALIDITY, GRACE_PERIODS, MAX_VALIDITY, SCOPES

VALIDITY_CHOICES = {
    "1": ("1 month", timedelta(days=31)),
    "3": ("3 months", timedelta(days=92)),
    "6": ("6 months", DEFAULT_VALIDITY),
    "12": ("12 months (the longest allowed)", MAX_VALIDITY),
}
GRACE_LABELS = {
    "0": "Stop the old key now",
    "1h": "1 hour",
    "24h": "24 hours",
    "7d": "7 days",
    "30d": "30 days",
}
SCOPE_LABELS = {"send": "Send emails", "read": "Read emails and their status"}


def split_addresses(value: str) -> list[str]:
    """Contacts as people paste them: one per line, or separated by commas or semicolons."""
    return [part.strip() for part in re.split(r"[\s,;]+", value or "") if part.strip()]


class ContactsField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3})

    def to_python(self, value) -> list[str]:
        return split_addresses(super().to_python(value))

    def prepare_value(self, value) -> str:
        return "\n".join(value) if isinstance(value, list) else value


class KeyCreateForm(forms.Form):
    label = forms.CharField(label="Label", max_length=100)
    contacts = ContactsField(
        label="Notification contacts",
        help_text="Who gets the expiry reminders: one address per line.",
    )
    scopes = forms.MultipleChoiceField(
        label="Scopes",
        choices=[(scope, SCOPE_LABELS[scope]) for scope in SCOPES],
        widget=forms.CheckboxSelectMultiple,
        initial=list(SCOPES),
    )
    validity = forms.ChoiceField(
        label="Valid for",
        choices=[(value, label) for value, (label, _) in VALIDITY_CHOICES.items()],
        initial="6",
    )
    test = forms.BooleanField(
        label="Test mode: emails are recorded and simulated, never delivered", required=False
    )

    @property
    def valid_for(self) -> timedelta:
        return VALIDITY_CHOICES[self.cleaned_data["validity"]][1]


class ContactsForm(forms.Form):
    contacts = ContactsField(label="Notification contacts")


class RotateForm(forms.Form):
    grace = forms.ChoiceField(
        label="Keep the old key working for",
        choices=[(value, GRACE_LABELS[value]) for value in GRACE_PERIODS],
        initial="24h",
        widget=forms.RadioSelect,
    )
