"""Portal login by emailed one-time code (SPEC §9; decisions in docs/portal.md).

A code is 6 characters from an alphabet without look-alikes, stored only as an HMAC keyed with
SECRET_KEY, valid for 10 minutes and 4 wrong tries, and only the newest code of an address
counts. Requests are throttled per address and per IP. The answer to a code request is the same
whether or not the address has an account.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.addresses import domain_of, normalise_address
from accounts.audit import Actor, audit_record
from accounts.models import Agency, LoginCode, User
from accounts.services import user_get_or_create_for_email

logger = logging.getLogger(__name__)

# No 0/O, 1/I/L, 2/Z, 5/S, 8/B: a code read off a phone or typed from a printout is unambiguous.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 6
CODE_VALIDITY = timedelta(minutes=10)
MAX_ATTEMPTS = 4
RESEND_AFTER = timedelta(seconds=30)
THROTTLE_WINDOW = timedelta(hours=1)
MAX_CODES_PER_ADDRESS = 5
MAX_CODES_PER_IP = 20

# Login codes are sent on behalf of this internal agency, never the user's own: an agency's
# members (and its API keys with the read scope) can read every email of their agency, so a
# code sent "as" the agency would let a member log in as the agency's admin.
LOGIN_AGENCY_NAME = "Postman Email (portal login codes)"
LOGIN_CODE_TAG = "Login code"

NOT_ALLOWED = "Use your work email address: the portal is open to {domains} addresses only."
WAIT_BEFORE_RESEND = "A code was sent moments ago. Wait {seconds} seconds before asking again."
TOO_MANY_FOR_ADDRESS = (
    "Too many codes were requested for this address. Try again in an hour, or use the last "
    "code you received."
)
TOO_MANY_FOR_IP = "Too many codes were requested from your network. Try again in an hour."
INVALID_CODE = "That code is not valid any more. Ask for a new one."
WRONG_CODE = "That code is not right. {left} more {tries} before it stops working."
TOO_MANY_ATTEMPTS = "Too many wrong tries: that code no longer works. Ask for a new one."
ACCOUNT_DISABLED = "This account is disabled. Ask an admin of your agency to invite you again."


class LoginError(ValidationError):
    """A refusal the login page shows as it is (the messages are constants above)."""


def is_signup_address(email: str) -> bool:
    """``SIGNUP_DOMAINS``: ``.gov.sg`` allows the domain and every subdomain, ``hdb.gov.sg``
    exactly that domain."""
    domain = domain_of(email)
    for allowed in settings.SIGNUP_DOMAINS:
        allowed = allowed.strip().lower()
        if not allowed:
            continue
        if allowed.startswith("."):
            if domain == allowed[1:] or domain.endswith(allowed):
                return True
        elif domain == allowed:
            return True
    return False


def signup_domains_text() -> str:
    return ", ".join(domain.strip() for domain in settings.SIGNUP_DOMAINS if domain.strip())


def _make_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _code_hash(email: str, code: str) -> str:
    # Bound to the address so a hash copied to another row proves nothing.
    return salted_hmac("accounts.login.code", f"{email}\n{code}", algorithm="sha256").hexdigest()


def normalise_code(value: str) -> str:
    """What people type: spaces, dashes and lower case are forgiven."""
    return "".join(char for char in (value or "").upper() if char not in " -\t")


def login_agency() -> Agency:
    """The internal agency login codes are sent under (see LOGIN_AGENCY_NAME). It has no
    domain, so nobody can ever log in to it."""
    agency = (
        Agency.objects.filter(name=LOGIN_AGENCY_NAME, domains__isnull=True).order_by("pk").first()
    )
    if agency is None:
        agency = Agency.objects.create(name=LOGIN_AGENCY_NAME, rate_limit_per_second=0)
    return agency


@dataclass(frozen=True)
class CodeRequest:
    email: str
    # None when no email was sent (a disabled account): the page says the same either way.
    login_code: LoginCode | None


def _check_throttles(*, email: str, ip_address: str | None, now) -> None:
    latest = LoginCode.objects.filter(email=email).order_by("-created_at").first()
    if latest is not None and now - latest.created_at < RESEND_AFTER:
        wait = RESEND_AFTER - (now - latest.created_at)
        raise LoginError(WAIT_BEFORE_RESEND.format(seconds=max(1, int(wait.total_seconds()))))
    since = now - THROTTLE_WINDOW
    if LoginCode.objects.filter(email=email, created_at__gt=since).count() >= (
        MAX_CODES_PER_ADDRESS
    ):
        raise LoginError(TOO_MANY_FOR_ADDRESS)
    if (
        ip_address
        and LoginCode.objects.filter(ip_address=ip_address, created_at__gt=since).count()
        >= MAX_CODES_PER_IP
    ):
        raise LoginError(TOO_MANY_FOR_IP)


@transaction.atomic
def login_code_request(*, email: str, ip_address: str | None) -> CodeRequest:
    """Create a code for ``email`` and email it. Raises ``LoginError`` (wrong domain, throttled).

    Nothing here depends on whether ``email`` has an account: unknown addresses in
    SIGNUP_DOMAINS get a code too (their account is created when they use it).
    """
    try:
        email = normalise_address(email)
    except ValidationError:
        raise LoginError("Enter a valid email address.")
    if not is_signup_address(email):
        raise LoginError(NOT_ALLOWED.format(domains=signup_domains_text()))
    now = timezone.now()
    _check_throttles(email=email, ip_address=ip_address, now=now)

    code = _make_code()
    login_code = LoginCode.objects.create(
        email=email,
        code_hash=_code_hash(email, code),
        created_at=now,
        expires_at=now + CODE_VALIDITY,
        ip_address=ip_address,
    )
    user = User.objects.filter(email__iexact=email).select_related("agency").first()
    if user is not None and not _may_log_in(user):
        # Recorded (so the throttles count it) but not sent; the page looks the same.
        return CodeRequest(email=email, login_code=None)

    context = {"code": code, "minutes": int(CODE_VALIDITY.total_seconds() // 60), "email": email}
    from emails.services.system import email_send_system

    email_send_system(
        agency=login_agency(),
        to=[email],
        subject=render_to_string("accounts/login_code_subject.txt", context).strip(),
        html=render_to_string("accounts/login_code_email.html", context),
        tag=LOGIN_CODE_TAG,
    )
    if settings.DEBUG:
        # Development convenience (SPEC §9): no need to open the dev inbox to log in.
        logger.warning("Login code for %s: %s (shown because DEBUG is on)", email, code)
    return CodeRequest(email=email, login_code=login_code)


def _may_log_in(user: User) -> bool:
    return user.is_active and (user.agency is None or user.agency.is_active)


def login_code_verify(*, email: str, code: str, ip_address: str | None) -> User:
    """The user ``code`` logs in, created on first login (with the agency of its domain, whose
    first user becomes admin). Raises ``LoginError``.

    Only the newest code of the address counts; each wrong try is counted under a row lock (and
    committed before the error is raised), so parallel guesses cannot exceed MAX_ATTEMPTS.
    """
    email = (email or "").strip().lower()
    error = _consume_code(email=email, code=normalise_code(code))
    if error is not None:
        raise LoginError(error)
    return _log_in(email=email, ip_address=ip_address)


@transaction.atomic
def _consume_code(*, email: str, code: str) -> str | None:
    """None when ``code`` is the address's valid newest code (then marked used), else the
    message to show."""
    now = timezone.now()
    login_code = (
        LoginCode.objects.select_for_update().filter(email=email).order_by("-created_at").first()
    )
    if (
        login_code is None
        or login_code.used_at is not None
        or login_code.expires_at <= now
        or login_code.attempts >= MAX_ATTEMPTS
    ):
        return INVALID_CODE
    if not hmac.compare_digest(login_code.code_hash, _code_hash(email, code)):
        login_code.attempts += 1
        login_code.save(update_fields=["attempts"])
        left = MAX_ATTEMPTS - login_code.attempts
        if left <= 0:
            return TOO_MANY_ATTEMPTS
        return WRONG_CODE.format(left=left, tries="try" if left == 1 else "tries")
    login_code.used_at = now
    login_code.save(update_fields=["used_at"])
    return None


@transaction.atomic
def _log_in(*, email: str, ip_address: str | None) -> User:
    user, _, _ = user_get_or_create_for_email(email=email)
    if not _may_log_in(user):
        # Raised inside the transaction: a user or agency created just now is rolled back.
        raise LoginError(ACCOUNT_DISABLED)
    audit_record(
        actor=Actor.of(user, ip_address=ip_address),
        action="user.logged_in",
        agency=user.agency,
        target=user,
    )
    return user
