"""The audit trail: every security-relevant action is recorded through ``audit_record``."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from accounts.models import Agency, AuditEvent, User


@dataclass(frozen=True)
class Actor:
    """Who acted: a portal user, a staff member, or the system (a scheduled job, a command)."""

    kind: str
    user: User | None = None
    ip_address: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(kind=AuditEvent.ActorKind.SYSTEM)

    @classmethod
    def of(cls, user: User, *, ip_address: str | None = None) -> Actor:
        kind = AuditEvent.ActorKind.STAFF if user.is_staff else AuditEvent.ActorKind.USER
        return cls(kind=kind, user=user, ip_address=ip_address)


def audit_record(
    *,
    actor: Actor,
    action: str,
    agency: Agency | None,
    target: models.Model | None = None,
    details: dict | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        agency=agency,
        actor=actor.user,
        actor_kind=actor.kind,
        actor_email=actor.user.email if actor.user else "",
        action=action,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:255] if target is not None else "",
        details=details or {},
        ip_address=actor.ip_address,
    )
