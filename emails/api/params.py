"""Path and query parameters of the read API, validated the way the reference API's Joi schemas
validate them: the first error only, in Joi's wording, as a 400 ``api_validation``."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from django.http import QueryDict

from emails.api.errors import ApiError, validation_error
from emails.models import Status
from emails.selectors import EmailListFilters

MAX_LIMIT = 1000
MAX_TAG_LENGTH = 255
# Joi refuses numbers JavaScript cannot represent exactly; it also keeps OFFSET within bigint.
MAX_SAFE_INTEGER = 2**53 - 1
BIGINT_MAX = 2**63 - 1

# What Joi's number() accepts from a string: sign, decimals and exponent, surrounding spaces.
_JOI_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?\s*", re.I | re.ASCII)
# A "+hh:mm" offset sent unencoded arrives as " hh:mm" (a raw "+" in a query is a space).
_SPACE_FOR_PLUS_OFFSET = re.compile(r"\A([^ ]*T[0-9:.,]+) ([0-9]{2}(?::?[0-9]{2})?)\Z", re.ASCII)

SORT_FIELDS = ("created_at", "updated_at")
SORT_CHOICES = [f"{sign}{field}" for field in SORT_FIELDS for sign in ("", "+", "-")]
CREATED_AT_OPERATORS = ("gt", "gte", "lt", "lte")
LIST_PARAMS = (
    "limit",
    "offset",
    "tag",
    "status",
    *(f"created_at[{op}]" for op in CREATED_AT_OPERATORS),
    "sort_by",
    "exclude_params",
)
SORT_BY_HELP = (
    "`created_at` or `updated_at`, prefixed with `-` for descending (the default) or `+` for "
    "ascending. Send `+` URL-encoded as `%2B`: a raw `+` in a query string means a space, so a "
    "leading space is also read as `+`."
)
EMAIL_ID_NOT_A_NUMBER = '"emailId" must be a number'
_CREATED_AT_KEY = re.compile(r"created_at\[(.*)\]", re.DOTALL)


def _label(key: str) -> str:
    """Joi names a nested key with dots: the query's ``created_at[gt]`` is ``created_at.gt``."""
    match = _CREATED_AT_KEY.fullmatch(key)
    return f'"created_at.{match[1]}"' if match else f'"{key}"'


def _joi_number(raw: str) -> Decimal | None:
    return Decimal(raw.strip()) if _JOI_NUMBER.fullmatch(raw) else None


def parse_email_id(raw: str) -> int | None:
    """The id to look up; None for a number no email can have (negative, fractional, beyond
    bigint), which is then simply not found. Anything that is not a number is a 400."""
    number = _joi_number(raw)
    if number is None:
        raise validation_error(EMAIL_ID_NOT_A_NUMBER)
    if number != number.to_integral_value() or not 0 <= number <= BIGINT_MAX:
        return None
    return int(number)


def _integer(key: str, raw: str, *, minimum: int, maximum: int = MAX_SAFE_INTEGER) -> int:
    label = _label(key)
    number = _joi_number(raw)
    if number is None:
        raise validation_error(f"{label} must be a number")
    if abs(number) > MAX_SAFE_INTEGER:
        raise validation_error(f"{label} must be a safe number")
    if number != number.to_integral_value():
        raise validation_error(f"{label} must be an integer")
    if number < minimum:
        raise validation_error(f"{label} must be greater than or equal to {minimum}")
    if number > maximum:
        raise validation_error(f"{label} must be less than or equal to {maximum}")
    return int(number)


def _iso_datetime(key: str, raw: str) -> datetime:
    """ISO-8601; a value without an offset is UTC (the API writes every timestamp in UTC)."""
    try:
        value = datetime.fromisoformat(_SPACE_FOR_PLUS_OFFSET.sub(r"\1+\2", raw))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        # Normalising here also refuses year-1 / year-9999 edges that overflow in UTC.
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise validation_error(f"{_label(key)} must be in ISO 8601 date format")


def _single(query: QueryDict, key: str) -> str | None:
    values = query.getlist(key)
    if len(values) > 1:
        raise validation_error(f"{_label(key)} must not be repeated")
    return values[0] if values else None


def _unknown_param_error(key: str) -> ApiError:
    if key == "created_at":
        return validation_error('"created_at" must be of type object')
    return validation_error(f"{_label(key)} is not allowed")


def parse_list_params(query: QueryDict) -> EmailListFilters:
    """Validate the list endpoint's query (see docs/read-api.md). A repeated known parameter is
    reported first, then bad values in LIST_PARAMS order, then unknown parameters: Joi reports
    known keys before unknown ones. ``sort_by`` takes a leading space for "+" (SORT_BY_HELP)."""
    raw = {key: value for key in LIST_PARAMS if (value := _single(query, key)) is not None}
    filters: dict[str, object] = {}
    if "limit" in raw:
        filters["limit"] = _integer("limit", raw["limit"], minimum=1, maximum=MAX_LIMIT)
    if "offset" in raw:
        filters["offset"] = _integer("offset", raw["offset"], minimum=0)
    if "tag" in raw:
        if raw["tag"] == "":
            raise validation_error('"tag" is not allowed to be empty')
        if len(raw["tag"]) > MAX_TAG_LENGTH:
            raise validation_error(
                f'"tag" length must be less than or equal to {MAX_TAG_LENGTH} characters long'
            )
        filters["tag"] = raw["tag"]
    if "status" in raw:
        if raw["status"].upper() not in Status.values:
            raise validation_error(f'"status" must be one of [{", ".join(Status.values)}]')
        filters["status"] = raw["status"].upper()
    for op in CREATED_AT_OPERATORS:
        key = f"created_at[{op}]"
        if key in raw:
            filters[f"created_at_{op}"] = _iso_datetime(key, raw[key])
    if "sort_by" in raw:
        filters.update(_sort(raw["sort_by"]))
    if "exclude_params" in raw:
        flag = raw["exclude_params"].lower()
        if flag not in ("true", "false"):
            raise validation_error('"exclude_params" must be a boolean')
        filters["exclude_params"] = flag == "true"
    for key in query:
        if key not in LIST_PARAMS:
            raise _unknown_param_error(key)
    return EmailListFilters(**filters)


def _sort(raw: str) -> dict[str, object]:
    # "+created_at" written unencoded in a URL arrives as " created_at": both mean ascending.
    sign, field = (raw[0], raw[1:]) if raw[:1] in ("+", "-", " ") else ("-", raw)
    if field not in SORT_FIELDS:
        raise validation_error(f'"sort_by" must be one of [{", ".join(SORT_CHOICES)}]')
    return {"sort_field": field, "descending": sign == "-"}
