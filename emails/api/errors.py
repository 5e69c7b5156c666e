"""API errors: one exception type carrying code, message and HTTP status, and the DRF handler
that renders every error under /v1 as ``{"code": ..., "message": ...}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)

UNAUTHENTICATED = "Unauthenticated request. Please try again with correct authentication"
INTERNAL_SERVER = "Internal Server Error."
MALFORMED = "Malformed request body"
RATE_LIMITED = "Too many requests. Please try again later."
NOT_FOUND = "Not found."
BODY_INVALID = (
    "body is a required string whose size must be less than or equal to 1MB in UTF-8 encoding"
)
ATTACHMENT_FORMAT = "Attachments must be sent via form-data"
ATTACHMENT_DEFAULT_FROM = "Attachments are not allowed for Postman default from email address"
ATTACHMENT_TOO_LARGE = "Size of one or more attachments exceeds limit"
ATTACHMENTS_TOO_LARGE = "Cumulative attachment size exceeds limit"
UNSUPPORTED_FILE_TYPE = (
    "Error: One or more attachments may be an unsupported file type. "
    "Please check the attached files."
)
TOO_MANY_RECIPIENTS = "Maximum of 50 recipients allowed"
FROM_NOT_VERIFIED = "From Address has not been verified. Contact us to learn more."
BLACKLISTED_RECIPIENT = "Recipient email is blacklisted"
EMPTY_AFTER_SANITISING = "Email subject and/or body empty after removing invalid HTML tags"


def invalid_from_message(default_address: str) -> str:
    return (
        f"Invalid 'from' email address, which must be either the default {default_address} "
        "or an address verified for your agency."
    )


def email_not_found_message(email_id: str) -> str:
    return f"Email message with ID {email_id} not found."


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return Response(self.body(), status=self.status, headers=headers)


def validation_error(message: str) -> ApiError:
    return ApiError("api_validation", message)


def exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return ApiError("unauthenticated", UNAUTHENTICATED, HTTPStatus.UNAUTHORIZED).response(
            headers={"WWW-Authenticate": "Bearer"}
        )
    if isinstance(exc, exceptions.Throttled):
        wait = max(1, int(exc.wait or 1))
        return ApiError("rate_limit", RATE_LIMITED, HTTPStatus.TOO_MANY_REQUESTS).response(
            headers={"Retry-After": str(wait)}
        )
    if isinstance(exc, (exceptions.ParseError, exceptions.UnsupportedMediaType)):
        return ApiError("malformed", MALFORMED).response()
    if isinstance(exc, exceptions.MethodNotAllowed):
        return ApiError(
            "method_not_allowed", str(exc.detail), HTTPStatus.METHOD_NOT_ALLOWED
        ).response()
    if isinstance(exc, (Http404, exceptions.NotFound)):
        return ApiError("not_found", NOT_FOUND, HTTPStatus.NOT_FOUND).response()
    if isinstance(exc, exceptions.PermissionDenied):
        return ApiError("unauthorized", str(exc.detail), HTTPStatus.FORBIDDEN).response()
    logger.exception("Unhandled API error", exc_info=exc)
    return ApiError("internal_server", INTERNAL_SERVER, HTTPStatus.INTERNAL_SERVER_ERROR).response()
