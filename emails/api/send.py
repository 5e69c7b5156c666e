from __future__ import annotations

from http import HTTPStatus

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emails.api import errors
from emails.api.errors import ApiError
from emails.api.send_input import parse_send_input
from emails.api.serializers import EmailSerializer, ErrorSerializer
from emails.ratelimit import ratelimit_hit
from emails.services.idempotency import (
    Replay,
    idempotency_begin,
    idempotency_complete,
    idempotency_key_parse,
    idempotency_release,
    idempotent_email,
    request_fingerprint,
)
from emails.services.send import email_send

# A multipart body larger than this cannot be within the limits (1 MiB body + 10 MiB of files),
# so it is refused before a byte of it is spooled to disk.
MAX_MULTIPART_BYTES = 16 * 1024 * 1024
SEND_SCOPE = "send"
MAY_NOT_SEND = "This API key may not send email"
REPLAYED = "Idempotent-Replayed"

_send_fields = {
    "recipient": serializers.EmailField(),
    "subject": serializers.CharField(),
    "body": serializers.CharField(help_text="HTML or text, at most 1 MiB in UTF-8"),
    "from": serializers.CharField(
        required=False, help_text="`Name <address>` or `address`; default or verified senders"
    ),
    "reply_to": serializers.EmailField(required=False),
    "cc": serializers.ListField(child=serializers.EmailField(), required=False),
    "bcc": serializers.ListField(child=serializers.EmailField(), required=False),
    "classification": serializers.ChoiceField(
        choices=["URGENT", "FOR_ACTION", "FOR_INFO"], required=False
    ),
    "tag": serializers.CharField(required=False, max_length=255),
    "disable_tracking": serializers.BooleanField(required=False, default=False),
}
_error = OpenApiResponse(ErrorSerializer)


class EmailSendApi(APIView):
    # JSON, urlencoded and multipart bodies: the REST_FRAMEWORK default parsers.

    @extend_schema(
        operation_id="send_email",
        summary="Send a transactional email",
        tags=["Email"],
        request={
            "application/json": inline_serializer("SendEmailJson", _send_fields),
            "application/x-www-form-urlencoded": inline_serializer("SendEmailForm", _send_fields),
            "multipart/form-data": inline_serializer(
                "SendEmailMultipart",
                {
                    **_send_fields,
                    "attachments": serializers.ListField(
                        child=serializers.FileField(), required=False
                    ),
                },
            ),
        },
        responses={
            201: OpenApiResponse(EmailSerializer, description="Recorded and queued (UNSENT)"),
            400: _error,
            401: _error,
            403: _error,
            409: _error,
            413: _error,
            429: _error,
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Retry-safe sends: within 24 h the same key and payload replay the "
                "first response (header `Idempotent-Replayed: true`); another payload gets 409.",
            )
        ],
        examples=[
            OpenApiExample(
                "OTP",
                request_only=True,
                value={
                    "recipient": "citizen@example.com",
                    "subject": "Your one-time password",
                    "body": "<p>Your OTP is <b>123456</b>.</p>",
                    "tag": "otp",
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        key = request.auth
        if request.content_type.startswith("multipart/"):
            length = int(request.META.get("CONTENT_LENGTH") or 0)
            if length > MAX_MULTIPART_BYTES:
                raise ApiError(
                    "attachment_limit",
                    errors.ATTACHMENTS_TOO_LARGE,
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                )
        try:
            data, files = request.data, request.FILES
        except (RequestDataTooBig, SuspiciousOperation):
            raise ApiError("malformed", errors.MALFORMED)
        payload = parse_send_input(data, files)
        header = request.headers.get("Idempotency-Key")
        if header is None:
            email = email_send(api_key=key, payload=payload)
            return Response(EmailSerializer(email).data, status=HTTPStatus.CREATED)
        return self._send_idempotently(
            key=key,
            payload=payload,
            idempotency_key=idempotency_key_parse(header),
            fingerprint=request_fingerprint(data, payload.attachments),
        )

    def _send_idempotently(self, *, key, payload, idempotency_key: str, fingerprint: str):
        """Send at most once per (agency, Idempotency-Key); a retry gets the first response."""
        scope = {"agency_id": key.agency_id, "key": idempotency_key}
        replay = idempotency_begin(**scope, fingerprint=fingerprint)
        if replay is None and (earlier := idempotent_email(**scope)) is not None:
            # A claim abandoned by a crashed process had already recorded its email.
            replay = Replay(status=HTTPStatus.CREATED, body=EmailSerializer(earlier).data)
            idempotency_complete(**scope, status=replay.status, body=replay.body)
        if replay is not None:
            return Response(replay.body, status=replay.status, headers={REPLAYED: "true"})
        try:
            email = email_send(api_key=key, payload=payload, idempotency_key=idempotency_key)
        except ApiError as error:
            idempotency_complete(**scope, status=error.status, body=error.body())
            raise
        except BaseException:
            idempotency_release(**scope)
            raise
        body = EmailSerializer(email).data
        idempotency_complete(**scope, status=HTTPStatus.CREATED, body=body)
        return Response(body, status=HTTPStatus.CREATED)

    def initial(self, request: Request, *args, **kwargs) -> None:
        """Authentication, then the send scope, then the rate limit — all before the body is
        parsed, so that every authenticated request counts, valid or not."""
        super().initial(request, *args, **kwargs)
        key = request.auth
        if SEND_SCOPE not in key.scopes:
            raise ApiError("unauthorized", MAY_NOT_SEND, HTTPStatus.FORBIDDEN)
        self.rate_limit = ratelimit_hit(
            agency_id=key.agency_id, limit=key.agency.rate_limit_per_second
        )
        if self.rate_limit and not self.rate_limit.allowed:
            raise Throttled(wait=self.rate_limit.reset)

    def finalize_response(self, request: Request, response: Response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        rate_limit = getattr(self, "rate_limit", None)
        if rate_limit:
            for header, value in rate_limit.headers().items():
                response[header] = value
        return response
