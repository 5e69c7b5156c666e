from __future__ import annotations

from django.urls import path

from emails import suppression_views

urlpatterns = [
    path("", suppression_views.suppressions_view, name="suppressions"),
    path("add", suppression_views.suppression_add_view, name="suppression-add"),
    path("import", suppression_views.suppression_import_view, name="suppression-import"),
    path("export", suppression_views.suppressions_export_view, name="suppressions-export"),
    path(
        "<int:suppression_id>/remove",
        suppression_views.suppression_remove_view,
        name="suppression-remove",
    ),
]
