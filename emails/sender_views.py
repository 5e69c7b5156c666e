"""Portal pages for sender domains and addresses (agency admins), and the public confirmation
page of an address. Thin: forms validate, ``emails.services.sender*`` act, templates render."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import agency_admin_required
from accounts.http import actor_of, client_ip
from emails.models import SenderDomain, VerifiedSender
from emails.sender_forms import AddressForm, DomainForm
from emails.sender_selectors import (
    sender_address_of,
    sender_addresses_of,
    sender_domain_of,
    sender_domains_of,
)
from emails.services.sender_domains import (
    SenderDomainError,
    sender_domain_add,
    sender_domain_check,
    sender_domain_records,
    sender_domain_remove,
)
from emails.services.senders import (
    CONFIRMATION_MAX_AGE,
    ConfirmationError,
    SenderAddressError,
    sender_address_add,
    sender_address_confirm,
    sender_address_remove,
    sender_confirmation_get,
)

CONFIRMATION_HOURS = int(CONFIRMATION_MAX_AGE.total_seconds() // 3600)


def _domain_or_404(request: HttpRequest, pk: int) -> SenderDomain:
    domain = sender_domain_of(agency=request.user.agency, pk=pk)
    if domain is None:
        raise Http404("No such sender domain")
    return domain


def _address_or_404(request: HttpRequest, pk: int) -> VerifiedSender:
    sender = sender_address_of(agency=request.user.agency, pk=pk)
    if sender is None:
        raise Http404("No such sender address")
    return sender


def _render_list(
    request: HttpRequest,
    *,
    domain_form: DomainForm | None = None,
    address_form: AddressForm | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "nav": "senders",
        "domains": sender_domains_of(agency=request.user.agency),
        "addresses": sender_addresses_of(agency=request.user.agency),
        "domain_form": domain_form or DomainForm(),
        "address_form": address_form or AddressForm(),
        "confirmation_hours": CONFIRMATION_HOURS,
    }
    return render(request, "emails/senders.html", context, status=status)


@agency_admin_required
@require_http_methods(["GET"])
def senders_view(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@agency_admin_required
@require_POST
def domain_add_view(request: HttpRequest) -> HttpResponse:
    form = DomainForm(request.POST)
    if form.is_valid():
        try:
            domain = sender_domain_add(
                agency=request.user.agency,
                domain=form.cleaned_data["domain"],
                actor=actor_of(request),
            )
        except SenderDomainError as error:
            form.add_error("domain", str(error))
        else:
            messages.success(
                request,
                f"{domain.domain} was added. Publish the records below, then press Check now.",
            )
            return redirect("sender-domain", pk=domain.pk)
    return _render_list(request, domain_form=form, status=400)


@agency_admin_required
@require_http_methods(["GET"])
def domain_view(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _domain_or_404(request, pk)
    context = {"nav": "senders", "domain": domain, "records": sender_domain_records(domain)}
    return render(request, "emails/senders_domain.html", context)


@agency_admin_required
@require_POST
def domain_check_view(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _domain_or_404(request, pk)
    result = sender_domain_check(domain=domain, actor=actor_of(request))
    domain = result.domain
    if result.unavailable:
        messages.warning(
            request,
            "The DNS look-up did not answer for "
            + ", ".join(result.unavailable)
            + ": their status was left as it was. Try again in a moment.",
        )
    if domain.status == SenderDomain.Status.VERIFIED:
        messages.success(request, f"{domain.domain} is verified: send from any address on it.")
    else:
        messages.info(request, f"{domain.domain} is {domain.get_status_display().lower()}.")
    return redirect("sender-domain", pk=domain.pk)


@agency_admin_required
@require_POST
def domain_remove_view(request: HttpRequest, pk: int) -> HttpResponse:
    domain = _domain_or_404(request, pk)
    sender_domain_remove(domain=domain, actor=actor_of(request))
    messages.success(request, f"{domain.domain} was removed: emails from it are refused now.")
    return redirect("senders")


@agency_admin_required
@require_POST
def address_add_view(request: HttpRequest) -> HttpResponse:
    form = AddressForm(request.POST)
    if form.is_valid():
        try:
            sender = sender_address_add(
                agency=request.user.agency,
                address=form.cleaned_data["address"],
                actor=actor_of(request),
            )
        except SenderAddressError as error:
            form.add_error("address", str(error))
        else:
            messages.success(
                request,
                f"A confirmation link was sent to {sender.address}. It works for "
                f"{CONFIRMATION_HOURS} hours.",
            )
            return redirect("senders")
    return _render_list(request, address_form=form, status=400)


@agency_admin_required
@require_POST
def address_resend_view(request: HttpRequest, pk: int) -> HttpResponse:
    sender = _address_or_404(request, pk)
    try:
        sender_address_add(
            agency=request.user.agency, address=sender.address, actor=actor_of(request)
        )
    except SenderAddressError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"A new confirmation link was sent to {sender.address}.")
    return redirect("senders")


@agency_admin_required
@require_POST
def address_remove_view(request: HttpRequest, pk: int) -> HttpResponse:
    sender = _address_or_404(request, pk)
    sender_address_remove(sender=sender, actor=actor_of(request))
    messages.success(request, f"{sender.address} was removed: emails from it are refused now.")
    return redirect("senders")


@require_http_methods(["GET", "POST"])
def confirm_view(request: HttpRequest, token: str) -> HttpResponse:
    """Public: the mailbox's owner may have no portal account. A GET only shows the address and
    a button; the POST confirms, so a mail scanner that opens the link confirms nothing."""
    try:
        if request.method == "POST":
            sender = sender_address_confirm(token=token, ip_address=client_ip(request))
            return render(request, "emails/senders_confirm.html", {"sender": sender, "done": True})
        sender = sender_confirmation_get(token=token)
    except ConfirmationError as error:
        return render(request, "emails/senders_confirm.html", {"error": str(error)}, status=400)
    return render(request, "emails/senders_confirm.html", {"sender": sender})
