"""Forms of the senders pages: they validate the input's shape; the services decide the rest."""

from __future__ import annotations

from django import forms

from emails.services.sender_domains import SenderDomainError, normalise_domain


class DomainForm(forms.Form):
    domain = forms.CharField(
        label="Domain",
        max_length=253,
        widget=forms.TextInput(
            attrs={"placeholder": "notify.agency.gov.sg", "spellcheck": "false"}
        ),
    )

    def clean_domain(self) -> str:
        try:
            return normalise_domain(self.cleaned_data["domain"])
        except SenderDomainError as error:
            raise forms.ValidationError(str(error)) from None


class AddressForm(forms.Form):
    address = forms.EmailField(label="Email address", max_length=254)
