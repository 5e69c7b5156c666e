"""Migration operations that keep a busy production table writable while they run."""

from __future__ import annotations

from django.db.migrations.operations import AddIndex


class AddIndexConcurrentlyOnPostgres(AddIndex):
    """``AddIndex`` that builds with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL, so that adding
    an index to a table of millions of emails does not block the send API for minutes; plainly
    elsewhere (SQLite). The migration that uses it must set ``atomic = False``.

    If a concurrent build fails, PostgreSQL leaves an INVALID index behind: drop it and migrate
    again (docs/staff-and-suppressions.md)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)
