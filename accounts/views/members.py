"""Members (admins only): list, invite, change role, remove."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import agency_admin_required
from accounts.forms import InviteForm, RoleForm
from accounts.http import actor_of
from accounts.models import User
from accounts.selectors import member_get, member_list
from accounts.services import MemberError, member_invite, member_remove, member_set_role


def _member_or_404(request: HttpRequest, member_id: int) -> User:
    member = member_get(agency=request.user.agency, member_id=member_id)
    if member is None:
        raise Http404("No such member")
    return member


def _render_list(request: HttpRequest, form: InviteForm, status: int = 200) -> HttpResponse:
    context = {
        "nav": "members",
        "members": member_list(agency=request.user.agency),
        "form": form,
        "roles": User.Role.choices,
    }
    return render(request, "accounts/members.html", context, status=status)


@agency_admin_required
@require_http_methods(["GET"])
def members_view(request: HttpRequest) -> HttpResponse:
    return _render_list(request, InviteForm())


@agency_admin_required
@require_POST
def member_invite_view(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            member = member_invite(
                agency=request.user.agency,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=actor_of(request),
            )
        except MemberError as error:
            form.add_error("email", str(error))
        else:
            messages.success(
                request,
                f"{member.email} was added as {member.get_role_display().lower()} and told "
                "by email how to log in.",
            )
            return redirect("members")
    return _render_list(request, form, status=400)


@agency_admin_required
@require_POST
def member_role_view(request: HttpRequest, member_id: int) -> HttpResponse:
    member = _member_or_404(request, member_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role.")
        return redirect("members")
    try:
        member_set_role(member=member, role=form.cleaned_data["role"], actor=actor_of(request))
    except MemberError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{member.email} is now {member.get_role_display().lower()}.")
    return redirect("members")


@agency_admin_required
@require_http_methods(["GET", "POST"])
def member_remove_view(request: HttpRequest, member_id: int) -> HttpResponse:
    member = _member_or_404(request, member_id)
    if request.method == "POST":
        try:
            revoked = member_remove(member=member, actor=actor_of(request))
        except MemberError as error:
            messages.error(request, str(error))
        else:
            keys = f" and {revoked} API key{'s' if revoked != 1 else ''} revoked" if revoked else ""
            messages.success(request, f"{member.email} was removed{keys}.")
        if member.pk == request.user.pk:
            return redirect("login")
        return redirect("members")
    active_keys = member.api_keys.filter(revoked_at__isnull=True).order_by("label")
    context = {"nav": "members", "member": member, "active_keys": active_keys}
    return render(request, "accounts/member_remove.html", context)
