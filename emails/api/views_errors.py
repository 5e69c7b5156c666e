"""Errors raised outside DRF views (unknown /v1 paths, middleware failures) still answer
``{code, message}`` under /v1; the portal keeps Django's HTML pages."""

from __future__ import annotations

from http import HTTPStatus

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from emails.api.errors import INTERNAL_SERVER, NOT_FOUND


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/v1/")


def api_or_html_404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"code": "not_found", "message": NOT_FOUND}, status=HTTPStatus.NOT_FOUND
        )
    return defaults.page_not_found(request, exception)


def api_or_html_500(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"code": "internal_server", "message": INTERNAL_SERVER},
            status=HTTPStatus.INTERNAL_SERVER_ERROR,
        )
    return defaults.server_error(request)
