"""The real URLconf plus two reference views that bound what the send API can do here.

- ``/bench/ceiling``: a plain Django view returning a small JSON through the production
  middleware: the framework's ceiling on this machine.
- ``/bench/floor``: the least work a send must do: a DRF view that authenticates the Bearer key
  with one indexed lookup, parses the JSON body and inserts one row. The row goes to the table
  ``bench_floor``, which bench/run.py creates in its scratch database only.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from rest_framework import authentication, exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apikeys.models import ApiKey
from apikeys.services import apikey_digest
from postman_email.urls import handler404, handler500  # noqa: F401  (the same error pages)

_INSERT_FLOOR = "INSERT INTO bench_floor (api_key_id, payload) VALUES (%s, %s) RETURNING id"


@csrf_exempt
def ceiling(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


class _Principal:
    is_authenticated = True


class FloorAuthentication(authentication.BaseAuthentication):
    """A Bearer key found by its digest: one query on the unique index, nothing else."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, plaintext = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        key = ApiKey.objects.only("id").filter(digest=apikey_digest(plaintext.strip())).first()
        if key is None:
            raise exceptions.AuthenticationFailed()
        return _Principal(), key


class FloorApi(APIView):
    authentication_classes = [FloorAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_FLOOR, [request.auth.id, json.dumps(request.data)])
            (row_id,) = cursor.fetchone()
        return Response({"id": str(row_id)}, status=HTTPStatus.CREATED)


urlpatterns = [
    path("bench/ceiling", ceiling),
    path("bench/floor", FloorApi.as_view()),
    path("", include("postman_email.urls")),
]
