"""A row and its child rows written by one statement.

On PostgreSQL ``insert_with_children`` sends one ``WITH parent AS (INSERT … RETURNING id)
INSERT INTO child … SELECT … FROM parent, (VALUES (…), …)`` statement. A statement is atomic
on its own, so it needs no transaction: one round trip instead of four (BEGIN, two INSERTs,
COMMIT), and no ORM insert compiled per call. The SQL is built once per pair of models and
number of children from their metadata; each child is a row of plain parameters (as arrays, one
per column, its values cost the driver several times as much to send). Each value is prepared by
its field's own ``pre_save`` and ``get_db_prep_save``, as the ORM's insert prepares it. A guard
query (``unless``) may ride along in the same statement: when it finds rows, nothing is written.
Other databases get the guard as a query of its own, then the ORM's ``save`` and
``bulk_create`` in a transaction.
"""

from __future__ import annotations

from functools import lru_cache

from django.db import connections, transaction
from django.db.models import Field, Model

_SQL = (
    "WITH {guard}parent AS (INSERT INTO {parent} ({parent_columns}) SELECT {parent_values}{where}"
    " RETURNING {pk}),"
    " children AS (INSERT INTO {child} ({fk}, {child_columns})"
    " SELECT parent.{pk}, {child_values} FROM parent,"
    " (VALUES {rows}) AS child(position, {names}) ORDER BY child.position)"
    " SELECT (SELECT {pk} FROM parent), {guard_rows}"
)


def _inserted_fields(model: type[Model], *, skip: str | None = None) -> list[Field]:
    # The primary key comes from its sequence; ``skip`` is the foreign key the parent's id fills.
    return [
        field
        for field in model._meta.concrete_fields
        if not field.primary_key and field.name != skip
    ]


def _cast_type(field: Field, connection) -> str:
    # Without the length modifier: an explicit cast to varchar(n) would truncate silently, while
    # the assignment to the column refuses an over-long value, as the ORM's insert does.
    return field.db_type(connection).split("(")[0]


@lru_cache(maxsize=256)
def _statement(
    parent_model: type[Model],
    child_model: type[Model],
    fk_name: str,
    alias: str,
    guard: str,
    count: int,
) -> tuple[str, list[Field], list[Field]]:
    connection = connections[alias]
    quote = connection.ops.quote_name
    parent_fields = _inserted_fields(parent_model)
    child_fields = _inserted_fields(child_model, skip=fk_name)
    names = [f"c{index}" for index in range(len(child_fields))]
    row = ", ".join(f"%s::{_cast_type(field, connection)}" for field in child_fields)
    sql = _SQL.format(
        guard=f"guard AS ({guard}), " if guard else "",
        parent=quote(parent_model._meta.db_table),
        parent_columns=", ".join(quote(field.column) for field in parent_fields),
        parent_values=", ".join(f"%s::{_cast_type(field, connection)}" for field in parent_fields),
        where=" WHERE NOT EXISTS (SELECT FROM guard)" if guard else "",
        pk=quote(parent_model._meta.pk.column),
        child=quote(child_model._meta.db_table),
        fk=quote(child_model._meta.get_field(fk_name).column),
        child_columns=", ".join(quote(field.column) for field in child_fields),
        child_values=", ".join(f"child.{name}" for name in names),
        rows=", ".join(f"({position}, {row})" for position in range(count)),
        names=", ".join(names),
        guard_rows="ARRAY(SELECT * FROM guard)" if guard else "ARRAY[]::text[]",
    )
    return sql, parent_fields, child_fields


def _values(instance: Model, fields: list[Field], connection) -> list:
    values = []
    for field in fields:
        value = field.pre_save(instance, add=True)
        # A nullable field's None is NULL, JSONField's included (Django stores JSON null only
        # when asked with ``Value(None, JSONField())``): the same value ``get_db_prep_save``
        # returns, without its two or three layers of calls. Most of an email's 30 columns are
        # still empty when it is recorded.
        if value is None and field.null:
            values.append(None)
        else:
            values.append(field.get_db_prep_save(value, connection=connection))
    return values


def insert_with_children(
    parent: Model,
    children: list[Model],
    *,
    fk_name: str,
    unless: tuple[str, list] | None = None,
) -> list:
    """Insert ``parent`` and then ``children``, whose foreign key ``fk_name`` it fills.

    ``unless`` is a query of one column and its parameters: when it finds rows, nothing is
    written and their values are returned (in the same statement on PostgreSQL, so that the
    common case, nothing found, costs no round trip of its own). Otherwise ``parent`` gets its
    primary key, as ``save()`` would give it, and the result is empty. ``children`` must not be
    empty and are not given their keys (nothing reads them back).
    """
    alias = parent._meta.default_manager.db
    connection = connections[alias]
    guard, guard_params = unless or ("", [])
    if connection.vendor != "postgresql":
        if guard:
            with connection.cursor() as cursor:
                cursor.execute(guard, guard_params)
                found = [value for (value,) in cursor.fetchall()]
            if found:
                return found
        with transaction.atomic(using=alias):
            parent.save(force_insert=True, using=alias)
            for child in children:
                setattr(child, fk_name, parent)
            type(children[0]).objects.using(alias).bulk_create(children)
        return []
    sql, parent_fields, child_fields = _statement(
        type(parent), type(children[0]), fk_name, alias, guard, len(children)
    )
    params = [*guard_params, *_values(parent, parent_fields, connection)]
    for child in children:
        params += _values(child, child_fields, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        pk, found = cursor.fetchone()
    if found:
        return found
    parent.pk = pk
    parent._state.adding = False
    parent._state.db = alias
    for child in children:
        setattr(child, fk_name, parent)
    return []
