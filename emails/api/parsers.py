"""JSON and urlencoded parsers that refuse bodies over DATA_UPLOAD_MAX_MEMORY_SIZE without
reading more than that (DRF's own parsers read the whole stream)."""

from __future__ import annotations

import io

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _bounded(stream):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise ParseError("Request body too large")
    return data


class BoundedJSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        return super().parse(io.BytesIO(_bounded(stream)), media_type, parser_context)


class BoundedFormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        return super().parse(io.BytesIO(_bounded(stream)), media_type, parser_context)
