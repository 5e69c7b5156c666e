"""``POST /v1/callback/email``: Amazon SES events delivered by Amazon SNS (docs/callbacks.md).

A plain Django view rather than DRF: SNS posts JSON as ``text/plain``, authenticates with HTTP
Basic (not an API key) and only reads the status code. SNS retries a delivery answered with a
5xx (with backoff, per the topic's delivery policy) and does not retry a 4xx, so the answers are
chosen so that it retries only when a retry can help:

- no Basic credentials: 401 with ``WWW-Authenticate: Basic realm="callbacks"``;
- wrong credentials, or CALLBACK_SECRET unset: 403;
- not an SNS message: 400;
- bad signature, certificate URL not allowlisted, topic not allowed: 403;
- processed, duplicate, unknown email, authentic but not an SES event we map: 200;
- certificate or SubscribeURL unreachable, database unavailable: 503 (SNS retries).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from http import HTTPStatus

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from emails import sns
from emails.services.ses import sns_message_handle

logger = logging.getLogger(__name__)

# SNS messages are at most 256 KiB; anything far larger is not one. (Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE bounds what is read before this check.)
MAX_BODY_BYTES = 1024 * 1024


def _error(code: str, message: str, status: int, **headers: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message}, status=status, headers=headers)


def _basic_auth_refusal(request: HttpRequest) -> JsonResponse | None:
    """None when the request carries CALLBACK_SECRET as its Basic credentials."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        # SNS sends credentials only after this challenge.
        return _error(
            "unauthenticated",
            "Basic credentials required",
            HTTPStatus.UNAUTHORIZED,
            **{"WWW-Authenticate": 'Basic realm="callbacks"'},
        )
    secret = settings.CALLBACK_SECRET
    if not secret:
        logger.error("Refused a provider callback: CALLBACK_SECRET is not set")
        return _error("unauthorized", "Callbacks are not enabled", HTTPStatus.FORBIDDEN)
    try:
        presented = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        presented = b""
    if not hmac.compare_digest(presented, secret.encode()):
        return _error("unauthorized", "Wrong credentials", HTTPStatus.FORBIDDEN)
    return None


@csrf_exempt
def email_callback(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return _error(
            "method_not_allowed",
            "Only POST is allowed",
            HTTPStatus.METHOD_NOT_ALLOWED,
            Allow="POST",
        )
    refusal = _basic_auth_refusal(request)
    if refusal is not None:
        return refusal
    if len(request.body) > MAX_BODY_BYTES:
        return _error("malformed", "Request body too large", HTTPStatus.BAD_REQUEST)
    try:
        outcome = sns_message_handle(message=sns.sns_verify(sns.sns_parse(request.body)))
    except sns.MalformedMessage as exc:
        return _error("malformed", f"Not an SNS message: {exc}", HTTPStatus.BAD_REQUEST)
    except sns.BadSignature as exc:
        logger.warning("Refused an SNS message: %s", exc)
        return _error("invalid_signature", "Invalid SNS signature", HTTPStatus.FORBIDDEN)
    except sns.TopicNotAllowed as exc:
        logger.warning("Refused an SNS message: %s", exc)
        return _error("unauthorized", "Topic not allowed", HTTPStatus.FORBIDDEN)
    except sns.FetchFailed as exc:
        # The certificate or the SubscribeURL is unreachable for now: let SNS try again.
        logger.warning("SNS message not handled yet: %s", exc)
        return _error("unavailable", "Try again later", HTTPStatus.SERVICE_UNAVAILABLE)
    except (OperationalError, InterfaceError):
        logger.exception("Database unavailable while processing an SNS message")
        return _error("unavailable", "Try again later", HTTPStatus.SERVICE_UNAVAILABLE)
    return JsonResponse({"status": outcome})
