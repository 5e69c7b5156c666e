"""The API's JSON renderer: DRF's own output, encoded by orjson.

An email object carries the request's ``params``, the body again, so most of a response is one
long string of HTML. The standard library's encoder wrote the send's 6 KB response in 25 µs, a
page of ten emails in ten times that; orjson writes the same bytes in a tenth of the time
(docs/performance.md). What orjson does not do itself is left to DRF: datetimes, dates, times,
``Decimal``, lazy translations and anything else unusual go through DRF's encoder (``default``),
and any value orjson refuses (an integer beyond 64 bits, a string with a lone surrogate), an
indented response (``Accept: application/json; indent=4``) or a setting that asks for ASCII,
spaced or non-strict JSON gets DRF's renderer whole. What differs is floats, which the API does
not write: some small ones take another form (``1e-7`` for the standard library's ``1e-07``), and
NaN and infinities are written ``null`` where DRF's strict encoder raises an error.
"""

from __future__ import annotations

import orjson
from rest_framework.renderers import JSONRenderer

_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)
# DRF writes these two as escapes, so that the output is also valid JavaScript.
_LINE_SEPARATOR = "\u2028".encode()
_PARAGRAPH_SEPARATOR = "\u2029".encode()


class ApiJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        indent = self.get_indent(accepted_media_type, renderer_context or {})
        if indent is not None or self.ensure_ascii or not self.compact or not self.strict:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            content = orjson.dumps(data, default=self.encoder_class().default, option=_OPTIONS)
        except TypeError:
            return super().render(data, accepted_media_type, renderer_context)
        if _LINE_SEPARATOR in content or _PARAGRAPH_SEPARATOR in content:
            content = content.replace(_LINE_SEPARATOR, b"\\u2028")
            content = content.replace(_PARAGRAPH_SEPARATOR, b"\\u2029")
        return content
