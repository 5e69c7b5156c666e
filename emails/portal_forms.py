from __future__ import annotations

from django import forms

from emails.models import Status
from emails.portal_selectors import SORT_CHOICES, PortalEmailFilters


class EmailFilterForm(forms.Form):
    """The list's filters: the read API's (status, tag, created range, sort) plus recipient."""

    recipient = forms.CharField(label="Recipient", required=False, max_length=254)
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *Status.choices]
    )
    tag = forms.CharField(label="Tag", required=False, max_length=255)
    created_from = forms.DateField(
        label="Created from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        label="Created to", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    sort = forms.ChoiceField(
        label="Sort", required=False, choices=list(SORT_CHOICES.items()), initial="-created_at"
    )

    def __init__(self, data=None, *args, **kwargs) -> None:
        if data is not None and data.get("status"):
            # The API takes a status in any case; so does the portal's URL.
            data = data.copy()
            data["status"] = data["status"].upper()
        super().__init__(data, *args, **kwargs)

    def to_filters(self) -> PortalEmailFilters:
        data = self.cleaned_data
        return PortalEmailFilters(
            status=data.get("status") or "",
            tag=data.get("tag") or "",
            recipient=(data.get("recipient") or "").strip(),
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
            sort=data.get("sort") or "-created_at",
        )
