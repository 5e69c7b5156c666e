"""API keys in the portal: list, create, edit contacts, rotate, revoke.

The plaintext of a new key is rendered once, in the response to the POST that created it, with
``Cache-Control: no-store``: it is never put in the session, a message or a redirect URL.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from accounts.decorators import portal_login_required
from accounts.http import actor_of
from apikeys.forms import ContactsForm, KeyCreateForm, RotateForm
from apikeys.models import ApiKey
from apikeys.selectors import apikey_get_for, apikey_rows
from apikeys.services import (
    GRACE_PERIODS,
    CreatedKey,
    apikey_create,
    apikey_revoke,
    apikey_rotate,
    apikey_update_contacts,
)


def _key_or_404(request: HttpRequest, key_id: int) -> ApiKey:
    key = apikey_get_for(user=request.user, key_id=key_id)
    if key is None:
        raise Http404("No such key")
    return key


@sensitive_variables("created")
def _render_created(request: HttpRequest, created: CreatedKey, *, rotated_from=None):
    context = {
        "nav": "keys",
        "key": created.key,
        "plaintext": created.plaintext,
        "rotated_from": rotated_from,
        "old_key_usable": rotated_from is not None and rotated_from.is_usable(),
        "public_base_url": settings.PUBLIC_BASE_URL,
    }
    response = render(request, "apikeys/created.html", context)
    # never_cache on the view adds no-store as well; said here too because it matters here.
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, private"
    return response


@portal_login_required
@require_GET
def keys_view(request: HttpRequest) -> HttpResponse:
    rows = apikey_rows(user=request.user)
    context = {
        "nav": "keys",
        "rows": rows,
        "public_base_url": settings.PUBLIC_BASE_URL,
        "shows_all": request.user.is_agency_admin,
    }
    return render(request, "apikeys/list.html", context)


@never_cache
@portal_login_required
@require_http_methods(["GET", "POST"])
def key_create_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = KeyCreateForm(request.POST)
        if form.is_valid():
            try:
                created = apikey_create(
                    owner=request.user,
                    label=form.cleaned_data["label"],
                    test=form.cleaned_data["test"],
                    scopes=form.cleaned_data["scopes"],
                    contacts=form.cleaned_data["contacts"],
                    valid_for=form.valid_for,
                    actor=actor_of(request),
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                return _render_created(request, created)
    else:
        form = KeyCreateForm(initial={"contacts": [request.user.email]})
    return render(request, "apikeys/create.html", {"nav": "keys", "form": form})


@portal_login_required
@require_http_methods(["GET", "POST"])
def key_contacts_view(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _key_or_404(request, key_id)
    if request.method == "POST":
        form = ContactsForm(request.POST)
        if form.is_valid():
            try:
                apikey_update_contacts(
                    key=key, contacts=form.cleaned_data["contacts"], actor=actor_of(request)
                )
            except ValidationError as error:
                form.add_error("contacts", error)
            else:
                messages.success(request, f"Contacts of “{key.label}” saved.")
                return redirect("keys")
    else:
        form = ContactsForm(initial={"contacts": key.contacts})
    context = {"nav": "keys", "key": key, "form": form}
    return render(request, "apikeys/contacts.html", context)


@never_cache
@portal_login_required
@require_http_methods(["GET", "POST"])
def key_rotate_view(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _key_or_404(request, key_id)
    if request.method == "POST":
        form = RotateForm(request.POST)
        if form.is_valid():
            try:
                created = apikey_rotate(
                    key=key,
                    grace=GRACE_PERIODS[form.cleaned_data["grace"]],
                    actor=actor_of(request),
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                return _render_created(request, created, rotated_from=created.key.predecessor)
    else:
        form = RotateForm()
    context = {"nav": "keys", "key": key, "form": form}
    return render(request, "apikeys/rotate.html", context)


@portal_login_required
@require_http_methods(["GET", "POST"])
def key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _key_or_404(request, key_id)
    if request.method == "POST":
        apikey_revoke(key=key, actor=actor_of(request))
        messages.success(
            request, f"“{key.label}” (…{key.last_five}) is revoked: it no longer authenticates."
        )
        return redirect("keys")
    return render(request, "apikeys/revoke.html", {"nav": "keys", "key": key})
