"""Which keys a portal user may see and manage: admins all of their agency's, members their own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from django.db import connections
from django.db.models import Model, QuerySet
from django.utils import timezone

from accounts.models import Agency, User
from apikeys.models import ApiKey

EXPIRING_SOON = timedelta(days=28)


def apikeys_visible_to(user: User) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.filter(agency_id=user.agency_id)
    if not user.is_agency_admin:
        keys = keys.filter(owner=user)
    return keys


def apikey_get_for(*, user: User, key_id: int) -> ApiKey | None:
    """The key if ``user`` may manage it; None otherwise (a teammate's key for a member, any
    key of another agency), which the views turn into 404."""
    return apikeys_visible_to(user).select_related("owner", "agency").filter(pk=key_id).first()


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    state: str  # active | expiring | rotated | expired | revoked
    state_label: str
    successor: ApiKey | None

    @property
    def manageable(self) -> bool:
        return self.state in ("active", "expiring", "rotated")


def _row(key: ApiKey, now: datetime) -> KeyRow:
    # A missing reverse one-to-one raises an AttributeError subclass: getattr gives None.
    successor = getattr(key, "successor", None)
    if key.revoked_at is not None:
        state, label = "revoked", "Revoked"
    elif key.valid_until <= now:
        state, label = "expired", "Expired"
    elif successor is not None:
        state, label = "rotated", "Rotated"
    elif key.valid_until - now <= EXPIRING_SOON:
        state, label = "expiring", "Expires soon"
    else:
        state, label = "active", "Active"
    return KeyRow(key=key, state=state, state_label=label, successor=successor)


def apikey_rows(*, user: User, now: datetime | None = None) -> list[KeyRow]:
    """The keys ``user`` may manage, usable ones first, newest first within each group."""
    now = now or timezone.now()
    keys = apikeys_visible_to(user).select_related("owner", "successor").order_by("-created_at")
    rows = [_row(key, now) for key in keys]
    order = {"active": 0, "expiring": 0, "rotated": 0, "expired": 1, "revoked": 2}
    return sorted(rows, key=lambda row: order[row.state])


_KEY_SQL = (
    "SELECT {columns} FROM {key} JOIN {agency} ON {agency}.id = {key}.agency_id"
    " JOIN {owner} ON {owner}.id = {key}.owner_id WHERE {key}.digest = %s"
)


@cache
def _key_lookup(alias: str) -> tuple[str, list[tuple[type[Model], list[str], list[tuple]]]]:
    """The SQL of ``apikey_by_digest`` and, per model, its field names and each column with
    the ORM's converters."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    models = [ApiKey, Agency, User]
    parts, columns = [], []
    for model in models:
        table = model._meta.db_table
        fields = model._meta.concrete_fields
        converters = []
        for field in fields:
            column = field.get_col(table)
            converters.append(
                (
                    column,
                    connection.ops.get_db_converters(column) + column.get_db_converters(connection),
                )
            )
            columns.append(f"{quote(table)}.{quote(field.column)}")
        parts.append((model, [field.attname for field in fields], converters))
    sql = _KEY_SQL.format(
        columns=", ".join(columns),
        key=quote(ApiKey._meta.db_table),
        agency=quote(Agency._meta.db_table),
        owner=quote(User._meta.db_table),
    )
    return sql, parts


def apikey_by_digest(digest: str) -> ApiKey | None:
    """The key with this digest, its agency and owner loaded: what every API request needs.

    One query, written as SQL: the ORM's ``select_related(...).get(...)`` spent four times as
    long compiling it and building three objects as PostgreSQL spent running it, on every API
    request. Values go through the same converters the ORM applies.
    """
    alias = ApiKey.objects.db
    sql, parts = _key_lookup(alias)
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    instances = []
    values = iter(row)
    for model, attnames, converters in parts:
        loaded = []
        for column, field_converters in converters:
            value = next(values)
            for converter in field_converters:
                value = converter(value, column, connection)
            loaded.append(value)
        instances.append(model.from_db(alias, attnames, loaded))
    key, agency, owner = instances
    key.agency, key.owner = agency, owner
    return key
