"""Keyset ("cursor") pagination for portal lists.

A page is the rows after (or before) the last row seen, in the order of an index such as
(agency, -created_at, -id): the database reads only the rows it returns, whatever the page
number, and no COUNT(*) is needed. Cursors are opaque, URL-safe strings of the row's sort value
and id; a tampered cursor is simply ignored (first page).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    # Cursors for the neighbouring pages, None when there is none.
    next_cursor: str | None
    previous_cursor: str | None


def encode_cursor(value: datetime, pk: int) -> str:
    raw = json.dumps([value.isoformat(), pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor or len(cursor) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, pk = json.loads(raw)
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None or not isinstance(pk, int) or isinstance(pk, bool):
            return None
        return moment, pk
    except (ValueError, TypeError, json.JSONDecodeError):
        return None


def keyset_page(
    queryset: QuerySet,
    *,
    field: str,
    descending: bool,
    size: int,
    after: str | None = None,
    before: str | None = None,
) -> Page:
    """One page of ``queryset`` ordered by (``field``, id), both in the same direction.

    ``after`` gives the page following a cursor, ``before`` the page preceding one (read in
    reverse, then flipped). One extra row tells whether there is a page beyond.
    """
    after_key, before_key = decode_cursor(after), decode_cursor(before)
    going_back = before_key is not None and after_key is None
    key = before_key if going_back else after_key
    # Reading backwards means reading in the opposite direction.
    reverse = descending != going_back
    sign = "-" if reverse else ""
    if key is not None:
        value, pk = key
        op = "lt" if reverse else "gt"
        # "(field, pk) beyond (value, pk)" written so that its first term is a plain range on
        # the indexed column: the database seeks straight to the cursor instead of scanning
        # from the top of the index and filtering (an OR of the two terms alone would).
        inclusive = "lte" if reverse else "gte"
        queryset = queryset.filter(
            Q(**{f"{field}__{inclusive}": value})
            & (Q(**{f"{field}__{op}": value}) | Q(**{f"pk__{op}": pk}))
        )
    rows = list(queryset.order_by(f"{sign}{field}", f"{sign}pk")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if going_back:
        rows.reverse()

    def cursor(row: Any) -> str:
        return encode_cursor(getattr(row, field), row.pk)

    if not rows:
        return Page(rows=[], next_cursor=None, previous_cursor=None)
    if going_back:
        next_cursor = cursor(rows[-1])
        previous_cursor = cursor(rows[0]) if more else None
    else:
        next_cursor = cursor(rows[-1]) if more else None
        previous_cursor = cursor(rows[0]) if key is not None else None
    return Page(rows=rows, next_cursor=next_cursor, previous_cursor=previous_cursor)
