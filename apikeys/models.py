from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Agency


class ApiKey(models.Model):
    """A Bearer key for the API. Only an HMAC digest of the plaintext is stored."""

    class Mode(models.TextChoices):
        LIVE = "live", "Live"
        TEST = "test", "Test"

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="api_keys")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    label = models.CharField(max_length=100)
    # HMAC-SHA256(API_KEY_PEPPER, plaintext) in hex; the unique index is the lookup path.
    digest = models.CharField(max_length=64, unique=True)
    last_five = models.CharField(max_length=5)
    mode = models.CharField(max_length=4, choices=Mode.choices, default=Mode.LIVE)
    scopes = models.JSONField(default=list)
    contacts = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    valid_until = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The key this one was issued to replace (rotation).
    predecessor = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="successor"
    )

    class Meta:
        verbose_name = "API key"
        indexes = [models.Index(fields=["agency", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.label} (…{self.last_five})"

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and now < self.valid_until

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if timezone.now() < self.valid_until else "expired"


class ApiKeyReminder(models.Model):
    """An expiry reminder already sent: the unique pair makes each reminder go out once."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="reminders")
    days_before = models.PositiveSmallIntegerField()
    email = models.ForeignKey("emails.Email", on_delete=models.SET_NULL, null=True, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "days_before"], name="reminder_once_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.key}: {self.days_before} days before expiry"
