"""Amazon SNS messages posted to our HTTP endpoint: parsing and signature verification.

Follows "Verifying the signatures of Amazon SNS messages" in the SNS developer guide: the
string to sign is the message's fields as ``name\\nvalue\\n`` pairs in a fixed order, signed with
RSA PKCS#1 v1.5 (SignatureVersion 1: SHA-1, 2: SHA-256) by the key of the X.509 certificate at
``SigningCertURL``. That URL is attacker-controlled input, so before anything is fetched it must be
https on a host matching ``SNS_CERT_HOST_PATTERN`` (default ``sns.<region>.amazonaws.com``); the
fetch follows no redirects, and certificates are cached (Django's cache, keyed by URL) because
SNS signs every message of a region with the same one.

A valid signature proves SNS sent the message, not that it comes from *our* topic: anyone can
create a topic. HTTP Basic credentials (``CALLBACK_SECRET``) and the optional ``SNS_TOPIC_ARNS``
allowlist are what tie it to us.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The fields signed, in the order they are signed (absent optional ones are left out).
_SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED_FIELDS[UNSUBSCRIBE_CONFIRMATION] = _SIGNED_FIELDS[SUBSCRIPTION_CONFIRMATION]
_OPTIONAL_FIELDS = {"Subject"}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}

CERT_CACHE_SECONDS = 24 * 60 * 60
FETCH_TIMEOUT_SECONDS = 5
# Certificates are about 2 KB; never read an unbounded response into memory.
MAX_FETCH_BYTES = 64 * 1024


class SnsError(Exception):
    """The message cannot be accepted."""


class MalformedMessage(SnsError):
    """Not an SNS message: not JSON, or a required field is missing."""


class BadSignature(SnsError):
    """The signature does not verify, or its certificate cannot be trusted."""


class UntrustedUrl(BadSignature):
    """A URL we would have to fetch is not https on an allowlisted SNS host. Nothing is fetched."""


class TopicNotAllowed(SnsError):
    """A verified message from a topic outside SNS_TOPIC_ARNS."""


class FetchFailed(SnsError):
    """An allowlisted URL could not be fetched (network trouble): worth a retry."""


@dataclass(frozen=True)
class SnsMessage:
    """A verified SNS message."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    subscribe_url: str | None


def sns_parse(body: bytes) -> dict[str, str]:
    """The JSON object SNS posted, with the fields its type requires, or ``MalformedMessage``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage("not JSON") from exc
    if not isinstance(data, dict):
        raise MalformedMessage("not a JSON object")
    fields = _SIGNED_FIELDS.get(data.get("Type"))  # type: ignore[arg-type]
    if fields is None:
        raise MalformedMessage(f"unknown message type {data.get('Type')!r}")
    required = [f for f in fields if f not in _OPTIONAL_FIELDS]
    required += ["Signature", "SignatureVersion", "SigningCertURL"]
    for name in required:
        if not isinstance(data.get(name), str):
            raise MalformedMessage(f"{name} is missing")
    return data


def string_to_sign(data: dict[str, str]) -> bytes:
    parts = []
    for name in _SIGNED_FIELDS[data["Type"]]:
        if name in _OPTIONAL_FIELDS and data.get(name) is None:
            continue
        parts.append(f"{name}\n{data[name]}\n")
    return "".join(parts).encode()


def check_url(url: str) -> None:
    """``UntrustedUrl`` unless ``url`` is https on a host matching SNS_CERT_HOST_PATTERN."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise UntrustedUrl(f"malformed URL {url!r}") from exc
    # ``hostname`` is what the connection goes to (userinfo such as "sns.x.amazonaws.com@" is
    # not part of it), lowercased.
    if parts.scheme != "https" or not re.fullmatch(settings.SNS_CERT_HOST_PATTERN, hostname):
        raise UntrustedUrl(f"refusing to fetch {url!r}: not https on an SNS host")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead anywhere, off the allowlisted hosts: treat it as an error.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # urllib's signature
        return None


def fetch(url: str) -> bytes:
    """GET an allowlisted https URL (see ``check_url``), or ``FetchFailed``."""
    check_url(url)
    context = ssl.create_default_context(cafile=settings.SNS_CERT_CA_BUNDLE or None)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects)
    try:
        with opener.open(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
            body = response.read(MAX_FETCH_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchFailed(f"GET {url} failed: {exc}") from exc
    if len(body) > MAX_FETCH_BYTES:
        raise FetchFailed(f"GET {url}: response too large")
    return body


def cert_cache_key(url: str) -> str:
    return "sns-cert:" + hashlib.sha256(url.encode()).hexdigest()


def _certificate(url: str) -> x509.Certificate:
    key = cert_cache_key(url)
    pem = cache.get(key)
    if pem is None:
        pem = fetch(url)
        try:
            x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise BadSignature(f"{url} is not a PEM certificate") from exc
        cache.set(key, pem, CERT_CACHE_SECONDS)
    return x509.load_pem_x509_certificate(pem)


def sns_verify(data: dict[str, str]) -> SnsMessage:
    """Check the signature of a parsed message (``sns_parse``) and return it verified.

    Raises ``BadSignature`` (``UntrustedUrl`` when the certificate URL is not allowlisted, in
    which case nothing was fetched) or ``FetchFailed``.
    """
    algorithm = _HASHES.get(data["SignatureVersion"])
    if algorithm is None:
        raise BadSignature(f"unsupported SignatureVersion {data['SignatureVersion']!r}")
    try:
        signature = base64.b64decode(data["Signature"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadSignature("the signature is not base64") from exc
    check_url(data["SigningCertURL"])
    certificate = _certificate(data["SigningCertURL"])
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise BadSignature("the signing certificate is not valid now")
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise BadSignature("the signing certificate's key is not RSA")
    try:
        public_key.verify(signature, string_to_sign(data), padding.PKCS1v15(), algorithm())
    except InvalidSignature as exc:
        raise BadSignature("the signature does not match the message") from exc
    return SnsMessage(
        type=data["Type"],
        message_id=data["MessageId"],
        topic_arn=data["TopicArn"],
        message=data["Message"],
        subscribe_url=data.get("SubscribeURL"),
    )


def check_topic(message: SnsMessage) -> None:
    if settings.SNS_TOPIC_ARNS and message.topic_arn not in settings.SNS_TOPIC_ARNS:
        raise TopicNotAllowed(f"topic {message.topic_arn} is not in SNS_TOPIC_ARNS")


def sns_confirm_subscription(message: SnsMessage) -> None:
    """Confirm a verified SubscriptionConfirmation by visiting its (allowlisted) SubscribeURL."""
    if message.type != SUBSCRIPTION_CONFIRMATION or not message.subscribe_url:
        raise MalformedMessage("not a subscription confirmation")
    fetch(message.subscribe_url)
    logger.info("Confirmed the SNS subscription to %s", message.topic_arn)
