from __future__ import annotations

from django.urls import path

from apikeys import views

urlpatterns = [
    path("", views.keys_view, name="keys"),
    path("new", views.key_create_view, name="key-create"),
    path("<int:key_id>/contacts", views.key_contacts_view, name="key-contacts"),
    path("<int:key_id>/rotate", views.key_rotate_view, name="key-rotate"),
    path("<int:key_id>/revoke", views.key_revoke_view, name="key-revoke"),
]
