from __future__ import annotations

from django.urls import path

from emails.tracking_views import open_pixel

urlpatterns = [
    path("o/<str:token>.gif", open_pixel, name="open-pixel"),
]
