"""Content-Security-Policy for the portal.

Django 5.2 has no CSP support of its own and the policy is one fixed string, so a tiny
middleware is enough. A view that needs another policy (the sandboxed email preview) sets the
header itself and the middleware leaves it alone.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"

# Templates carry no inline script or style: everything comes from /static/.
PORTAL_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)

# drf-spectacular's Swagger UI page boots from an inline <script> and an inline <style>; its
# assets come from the sidecar under /static/. Only this page gets 'unsafe-inline'; it shows no
# user data and still loads nothing from another origin.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)

# JSON and staff surfaces: the API's JSON needs no policy, and Django admin's pages belong to
# staff tooling with their own review.
SKIPPED_PREFIXES = ("/v1/", "/admin/")


def policy_for(path: str) -> str | None:
    if path == "/docs" or path.startswith("/docs/"):
        return DOCS_POLICY
    if path.startswith(SKIPPED_PREFIXES):
        return None
    return PORTAL_POLICY


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER in response:
            return response
        if settings.DEBUG and response.status_code in (404, 500):
            # Django's technical error pages (DEBUG only) are styled inline.
            return response
        policy = policy_for(request.path)
        if policy is not None:
            response[HEADER] = policy
        return response
