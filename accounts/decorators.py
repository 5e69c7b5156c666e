"""Access control for portal views: one funnel for "logged in, in an agency" and "agency admin".

Every portal view goes through one of these, so the rule is enforced on the server whatever the
page shows. Objects of another agency are the views' business: they look rows up through the
request user's agency and answer 404 (never 403, which would confirm that the row exists).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

LOGIN_PATH = "/login"

View = Callable[..., HttpResponse]


def portal_login_required(view: View) -> View:
    """Anonymous → redirect to ``/login?next=<path>``; a user without an agency → 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not user.is_authenticated or not user.is_active:
            return redirect_to_login(request.get_full_path(), LOGIN_PATH)
        if user.agency_id is None:
            # E.g. a staff account that never joined an agency: it has Django admin instead.
            raise PermissionDenied("This account does not belong to an agency.")
        return view(request, *args, **kwargs)

    return wrapper


def agency_admin_required(view: View) -> View:
    """``portal_login_required`` plus the agency admin role; a member gets the 403 page."""

    @wraps(view)
    def check_role(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_agency_admin:
            raise PermissionDenied("Only agency admins can open this page.")
        return view(request, *args, **kwargs)

    return portal_login_required(check_role)
