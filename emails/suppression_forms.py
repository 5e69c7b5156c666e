"""Forms of the portal's suppression pages."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from accounts.addresses import normalise_address
from emails.csv_addresses import MAX_UPLOAD_BYTES

REASON_HELP = "Why: kept with the entry and in the audit log."


def _reason_field(help_text: str = REASON_HELP) -> forms.CharField:
    return forms.CharField(
        max_length=500,
        help_text=help_text,
        error_messages={"required": "Give a reason."},
    )


class SuppressionAddForm(forms.Form):
    address = forms.CharField(max_length=254, error_messages={"required": "Enter an address."})
    reason = _reason_field()

    def clean_address(self) -> str:
        try:
            return normalise_address(self.cleaned_data["address"])
        except ValidationError:
            raise ValidationError("Enter a valid email address, like name@example.com.") from None


class SuppressionImportForm(forms.Form):
    file = forms.FileField(error_messages={"required": "Choose a CSV file."})
    reason = _reason_field("For every row without a reason column of its own.")

    def clean_file(self):
        file = self.cleaned_data["file"]
        if file.size > MAX_UPLOAD_BYTES:
            raise ValidationError("The file is larger than 5 MB: split it.")
        return file


class SuppressionRemoveForm(forms.Form):
    reason = _reason_field("Why emails to this address may go out again (audit log).")


class SuppressionSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=254)
