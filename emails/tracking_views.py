"""The open-tracking pixel (``/t/o/<token>.gif``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.utils import timezone
from django.views.decorators.http import require_safe

from emails.services.events import email_open_record
from emails.tracking import TRANSPARENT_GIF, email_id_from_open_token


@require_safe
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    """Record an open and answer with a transparent GIF; a forged or tampered token gets 404.

    A valid token whose email no longer exists still gets the image: a broken image in an old
    email helps nobody. No cookies are read or set.
    """
    email_id = email_id_from_open_token(token)
    if email_id is None:
        # A bare 404 rather than the portal's page: this URL is fetched as an image.
        return HttpResponseNotFound("Not found", content_type="text/plain")
    # HEAD requests are link checkers and proxies probing the URL, not an open.
    if request.method == "GET":
        email_open_record(
            email_id=email_id,
            at=timezone.now(),
            user_agent=request.headers.get("User-Agent", ""),
        )
    response = HttpResponse(TRANSPARENT_GIF, content_type="image/gif")
    # Every open must reach us: no browser, proxy or CDN may answer from a cache.
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, private"
    response["Pragma"] = "no-cache"
    response["Expires"] = "0"
    return response
