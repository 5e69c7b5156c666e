from __future__ import annotations

from django.urls import path

from emails import portal_views

urlpatterns = [
    path("", portal_views.email_list_view, name="email-list"),
    path("<int:email_id>/", portal_views.email_detail_view, name="email-detail"),
    path("<int:email_id>/preview", portal_views.email_preview_view, name="email-preview"),
]
