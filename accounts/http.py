"""Small request helpers shared by the portal's views."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

from accounts.audit import Actor


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP address, for throttling and the audit log.

    Behind a load balancer REMOTE_ADDR is the balancer's, so with TRUST_X_FORWARDED_FOR the last
    X-Forwarded-For entry (the one our own proxy appended) is used; earlier entries are whatever
    the client sent and are never trusted.
    """
    candidate = request.META.get("REMOTE_ADDR", "")
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded.strip():
            candidate = forwarded.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def actor_of(request: HttpRequest) -> Actor:
    """The audit actor for the logged-in user of ``request``."""
    return Actor.of(request.user, ip_address=client_ip(request))
