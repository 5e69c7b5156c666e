from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from apikeys.models import ApiKey
from apikeys.selectors import apikey_by_digest
from apikeys.services import KEY_SHAPE, apikey_digest

LAST_USED_RESOLUTION = timedelta(minutes=1)
AGENCY_SUSPENDED = "Agency is suspended"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>``. ``request.user`` is the key's owner and ``request.auth``
    the ApiKey (with its agency loaded). Costs one query, plus at most one write a minute.
    A suspended agency's keys get 403 ``Agency is suspended`` (checked on the loaded agency)."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, plaintext = header.strip().partition(" ")
        if scheme.lower() != self.keyword:
            return None
        plaintext = plaintext.strip()
        if not KEY_SHAPE.match(plaintext):
            raise exceptions.AuthenticationFailed()

        # Looked up by its digest (an HMAC of the key under API_KEY_PEPPER): what an attacker
        # controls never meets a stored secret in a Python comparison.
        key = apikey_by_digest(apikey_digest(plaintext))
        now = timezone.now()
        if key is None or not key.is_usable(now):
            raise exceptions.AuthenticationFailed()
        if not key.agency.is_active:
            # Staff suspended the agency: the key is genuine, so 403 rather than 401, and the
            # message says why (the exception handler renders it as code "unauthorized").
            raise exceptions.PermissionDenied(AGENCY_SUSPENDED)

        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return key.owner, key

    def authenticate_header(self, request) -> str:
        return "Bearer"
