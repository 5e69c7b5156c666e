from __future__ import annotations

from django.urls import path

from accounts.views import audit, login, members
from emails import portal_views

urlpatterns = [
    path("", portal_views.dashboard_view, name="dashboard"),
    path("login", login.login_view, name="login"),
    path("login/code", login.login_code_view, name="login-code"),
    path("login/resend", login.login_resend_view, name="login-resend"),
    path("logout", login.logout_view, name="logout"),
    path("members/", members.members_view, name="members"),
    path("members/invite", members.member_invite_view, name="member-invite"),
    path("members/<int:member_id>/role", members.member_role_view, name="member-role"),
    path("members/<int:member_id>/remove", members.member_remove_view, name="member-remove"),
    path("audit/", audit.audit_view, name="audit"),
]
