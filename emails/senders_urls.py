from __future__ import annotations

from django.urls import path

from emails import sender_views

urlpatterns = [
    path("", sender_views.senders_view, name="senders"),
    path("domains/add", sender_views.domain_add_view, name="sender-domain-add"),
    path("domains/<int:pk>/", sender_views.domain_view, name="sender-domain"),
    path("domains/<int:pk>/check", sender_views.domain_check_view, name="sender-domain-check"),
    path("domains/<int:pk>/remove", sender_views.domain_remove_view, name="sender-domain-remove"),
    path("addresses/add", sender_views.address_add_view, name="sender-address-add"),
    path(
        "addresses/<int:pk>/resend", sender_views.address_resend_view, name="sender-address-resend"
    ),
    path(
        "addresses/<int:pk>/remove", sender_views.address_remove_view, name="sender-address-remove"
    ),
    path("confirm/<str:token>", sender_views.confirm_view, name="sender-confirm"),
]
