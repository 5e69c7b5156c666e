"""A row and its child rows written by one statement.

On PostgreSQL ``insert_with_children`` sends one ``WITH parent AS (INSERT … RETURNING id)
INSERT INTO child … SELECT … FROM parent, unnest(…)`` statement. A statement is atomic on its
own, so it needs no transaction: one round trip instead of four (BEGIN, two INSERTs, COMMIT),
and no ORM insert compiled per call. The SQL is built once per pair of models from their
metadata; each value is prepared by its field's own ``pre_save`` and ``get_db_prep_save``, as
the ORM's insert prepares it. Other databases get the ORM's ``save`` and ``bulk_create`` in a
transaction.
"""

from __future__ import annotations

from functools import cache

from django.db import connections, transaction
from django.db.models import Field, Model

_SQL = (
    "WITH parent AS (INSERT INTO {parent} ({parent_columns}) VALUES ({parent_values})"
    " RETURNING {pk}),"
    " children AS (INSERT INTO {child} ({fk}, {child_columns})"
    " SELECT parent.{pk}, {child_values} FROM parent,"
    " unnest({arrays}) WITH ORDINALITY AS child({names}, position) ORDER BY child.position)"
    " SELECT {pk} FROM parent"
)


def _inserted_fields(model: type[Model], *, skip: str | None = None) -> list[Field]:
    # The primary key comes from its sequence; ``skip`` is the foreign key the parent's id fills.
    return [
        field
        for field in model._meta.concrete_fields
        if not field.primary_key and field.name != skip
    ]


def _array_type(field: Field, connection) -> str:
    # Without the length modifier: an explicit cast to varchar(n) would truncate silently, while
    # the assignment to the column refuses an over-long value, as the ORM's insert does.
    return field.db_type(connection).split("(")[0] + "[]"


@cache
def _statement(
    parent_model: type[Model], child_model: type[Model], fk_name: str, alias: str
) -> tuple[str, list[Field], list[Field]]:
    connection = connections[alias]
    quote = connection.ops.quote_name
    parent_fields = _inserted_fields(parent_model)
    child_fields = _inserted_fields(child_model, skip=fk_name)
    names = [f"c{index}" for index in range(len(child_fields))]
    sql = _SQL.format(
        parent=quote(parent_model._meta.db_table),
        parent_columns=", ".join(quote(field.column) for field in parent_fields),
        parent_values=", ".join(["%s"] * len(parent_fields)),
        pk=quote(parent_model._meta.pk.column),
        child=quote(child_model._meta.db_table),
        fk=quote(child_model._meta.get_field(fk_name).column),
        child_columns=", ".join(quote(field.column) for field in child_fields),
        child_values=", ".join(f"child.{name}" for name in names),
        arrays=", ".join(f"%s::{_array_type(field, connection)}" for field in child_fields),
        names=", ".join(names),
    )
    return sql, parent_fields, child_fields


def _values(instance: Model, fields: list[Field], connection) -> list:
    return [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection=connection)
        for field in fields
    ]


def insert_with_children(parent: Model, children: list[Model], *, fk_name: str) -> None:
    """Insert ``parent`` and then ``children``, whose foreign key ``fk_name`` it fills.

    ``parent`` gets its primary key, as ``save()`` would give it; ``children`` must not be
    empty and are not given theirs (nothing reads them back)."""
    alias = parent._meta.default_manager.db
    connection = connections[alias]
    if connection.vendor != "postgresql":
        with transaction.atomic(using=alias):
            parent.save(force_insert=True, using=alias)
            for child in children:
                setattr(child, fk_name, parent)
            type(children[0]).objects.using(alias).bulk_create(children)
        return
    sql, parent_fields, child_fields = _statement(type(parent), type(children[0]), fk_name, alias)
    columns = zip(*(_values(child, child_fields, connection) for child in children), strict=True)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*_values(parent, parent_fields, connection), *map(list, columns)])
        (parent.pk,) = cursor.fetchone()
    parent._state.adding = False
    parent._state.db = alias
    for child in children:
        setattr(child, fk_name, parent)
