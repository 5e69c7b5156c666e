"""Login by emailed code, and logout. The rules live in ``accounts.login``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import CodeForm, EmailForm
from accounts.http import client_ip
from accounts.login import (
    CODE_VALIDITY,
    LoginError,
    login_code_request,
    login_code_verify,
    signup_domains_text,
)

SESSION_EMAIL = "login_email"
SESSION_NEXT = "login_next"
# Never go back to these after logging in.
_NOT_NEXT = ("/login", "/logout")


def safe_next(request: HttpRequest, value: str | None) -> str:
    """``value`` when it is a path or URL on this site, else the dashboard (no open redirect)."""
    if (
        value
        and url_has_allowed_host_and_scheme(
            value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
        and not value.startswith(_NOT_NEXT)
    ):
        return value
    return "/"


def _is_logged_in(request: HttpRequest) -> bool:
    return request.user.is_authenticated and request.user.agency_id is not None


@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if _is_logged_in(request):
        return redirect(safe_next(request, request.GET.get("next")))
    if request.method == "POST":
        form = EmailForm(request.POST)
        if form.is_valid():
            try:
                sent = login_code_request(
                    email=form.cleaned_data["email"], ip_address=client_ip(request)
                )
            except LoginError as error:
                form.add_error("email", error.messages[0])
            else:
                request.session[SESSION_EMAIL] = sent.email
                request.session[SESSION_NEXT] = safe_next(request, form.cleaned_data["next"])
                return redirect("login-code")
    else:
        form = EmailForm(initial={"next": safe_next(request, request.GET.get("next"))})
    return render(request, "accounts/login.html", {"form": form, "domains": signup_domains_text()})


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def login_code_view(request: HttpRequest) -> HttpResponse:
    email = request.session.get(SESSION_EMAIL)
    if not email:
        return redirect("login")
    if request.method == "POST":
        form = CodeForm(request.POST)
        if form.is_valid():
            try:
                user = login_code_verify(
                    email=email, code=form.cleaned_data["code"], ip_address=client_ip(request)
                )
            except LoginError as error:
                form.add_error("code", error.messages[0])
            else:
                next_url = request.session.get(SESSION_NEXT, "/")
                login(request, user)  # a new session key: no fixation
                request.session.pop(SESSION_EMAIL, None)
                request.session.pop(SESSION_NEXT, None)
                return redirect(safe_next(request, next_url))
    else:
        form = CodeForm()
    context = {
        "form": form,
        "email": email,
        "minutes": int(CODE_VALIDITY.total_seconds() // 60),
    }
    return render(request, "accounts/login_code.html", context)


@require_POST
def login_resend_view(request: HttpRequest) -> HttpResponse:
    email = request.session.get(SESSION_EMAIL)
    if not email:
        return redirect("login")
    try:
        login_code_request(email=email, ip_address=client_ip(request))
    except LoginError as error:
        messages.error(request, error.messages[0])
    else:
        messages.success(request, f"We sent a new code to {email}. Earlier codes no longer work.")
    return redirect("login-code")


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, "You are logged out.")
    return redirect("login")
