"""GET /v1/transactional/email/{id} and GET /v1/transactional/email (SPEC §4). Not rate limited."""

from __future__ import annotations

from http import HTTPStatus

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emails import selectors
from emails.api.errors import ApiError, email_not_found_message
from emails.api.params import (
    CREATED_AT_OPERATORS,
    MAX_LIMIT,
    SORT_BY_HELP,
    SORT_CHOICES,
    parse_email_id,
    parse_list_params,
)
from emails.api.serializers import EmailListSerializer, EmailSerializer, ErrorSerializer
from emails.models import Status

READ_SCOPE = "read"
MAY_NOT_READ = "This API key may not read emails"

_error = OpenApiResponse(ErrorSerializer)


class _ReadApi(APIView):
    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if READ_SCOPE not in request.auth.scopes:
            raise ApiError("unauthorized", MAY_NOT_READ, HTTPStatus.FORBIDDEN)


class EmailDetailApi(_ReadApi):
    @extend_schema(
        operation_id="get_email",
        summary="Get an email",
        tags=["Email"],
        parameters=[
            OpenApiParameter(
                "email_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The email's id"
            )
        ],
        responses={200: EmailSerializer, 400: _error, 401: _error, 403: _error, 404: _error},
    )
    def get(self, request: Request, email_id: str) -> Response:
        pk = parse_email_id(email_id)
        email = None if pk is None else selectors.email_get(agency=request.auth.agency, email_id=pk)
        if email is None:
            raise ApiError("not_found", email_not_found_message(email_id), HTTPStatus.NOT_FOUND)
        return Response(EmailSerializer(email).data)


_created_at_parameters = [
    OpenApiParameter(
        f"created_at[{op}]",
        OpenApiTypes.DATETIME,
        description=f"Only emails created {label} this ISO-8601 time (UTC if no offset is given)",
    )
    for op, label in zip(
        CREATED_AT_OPERATORS, ("after", "at or after", "before", "at or before"), strict=True
    )
]


class EmailListApi(_ReadApi):
    @extend_schema(
        operation_id="list_emails",
        summary="List emails",
        description="The agency's emails, newest first by default. Every filter given applies.",
        tags=["Email"],
        parameters=[
            OpenApiParameter(
                "limit", OpenApiTypes.INT, description=f"1 to {MAX_LIMIT}; default 10"
            ),
            OpenApiParameter("offset", OpenApiTypes.INT, description="0 or more; default 0"),
            OpenApiParameter("tag", OpenApiTypes.STR, description="Exact tag"),
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=Status.values, description="Case-insensitive"
            ),
            *_created_at_parameters,
            OpenApiParameter(
                "sort_by", OpenApiTypes.STR, enum=SORT_CHOICES, description=SORT_BY_HELP
            ),
            OpenApiParameter(
                "exclude_params", OpenApiTypes.BOOL, description="Omit `params` from each email"
            ),
        ],
        responses={200: EmailListSerializer, 400: _error, 401: _error, 403: _error},
    )
    def get(self, request: Request) -> Response:
        filters = parse_list_params(request.query_params)
        page = selectors.email_list(agency=request.auth.agency, filters=filters)
        data = EmailSerializer(
            page.emails, many=True, context={"exclude_params": filters.exclude_params}
        ).data
        return Response({"has_more": page.has_more, "data": data})
