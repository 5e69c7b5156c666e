"""Open tracking: the signed token in the pixel URL and the pixel the worker adds to the HTML.

The token is ``<email id in base62>.<HMAC-SHA256>``, signed with SECRET_KEY under its own salt, so
it cannot be guessed or derived from an email id, and a token for one email can never be turned
into one for another. It carries the email id rather than a recipient id: one message goes to
every recipient (to, cc and bcc), so the pixel cannot tell who opened it. It does not expire: an
email can be opened years later. Rotating SECRET_KEY invalidates the pixels of emails already sent
unless the old key is kept in SECRET_KEY_FALLBACKS.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.utils.html import escape

_SALT = "postman-email.open-pixel"

# The smallest transparent 1x1 GIF (43 bytes).
TRANSPARENT_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def _signer() -> signing.Signer:
    # "." is not in the URL-safe base64 alphabet of the signature, so the token splits cleanly.
    return signing.Signer(salt=_SALT, sep=".", algorithm="sha256")


def open_token(*, email_id: int) -> str:
    return _signer().sign(signing.b62_encode(email_id))


def email_id_from_open_token(token: str) -> int | None:
    """The email id a token was made for, or None for anything forged, tampered or malformed."""
    try:
        value = _signer().unsign(token)
        email_id = signing.b62_decode(value)
    except (signing.BadSignature, ValueError):
        return None
    return email_id if email_id > 0 else None


def open_pixel_url(*, email_id: int) -> str:
    return f"{settings.PUBLIC_BASE_URL}/t/o/{open_token(email_id=email_id)}.gif"


def with_open_pixel(html: str, *, email_id: int) -> str:
    """``html`` with the open-tracking image appended (inside ``</body>`` if there is one).

    ``alt=""`` keeps it out of screen readers and of the text part; width and height make
    clients that block images reserve no space for it.
    """
    pixel = (
        f'<img src="{escape(open_pixel_url(email_id=email_id))}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0" />'
    )
    index = html.lower().rfind("</body>")
    if index == -1:
        return html + pixel
    return html[:index] + pixel + html[index:]
