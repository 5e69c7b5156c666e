from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class Agency(models.Model):
    """A government agency: the tenant every key, email and sender belongs to."""

    name = models.CharField(max_length=200)
    # Sends per second through the API, counted in a fixed one-second window; 0 = unlimited.
    rate_limit_per_second = models.PositiveIntegerField(default=10)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "agencies"

    def __str__(self) -> str:
        return self.name


class AgencyDomain(models.Model):
    """An email domain whose people belong to the agency (e.g. ``hdb.gov.sg``)."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, unique=True)

    def __str__(self) -> str:
        return self.domain


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)  # None gives an unusable password: portal users log in by OTP
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    email = models.EmailField(unique=True)
    agency = models.ForeignKey(
        Agency, on_delete=models.PROTECT, related_name="users", null=True, blank=True
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email

    @property
    def is_agency_admin(self) -> bool:
        return self.role == self.Role.ADMIN


class AuditEvent(models.Model):
    """One security-relevant action: who did what to which object, from where, and when."""

    class ActorKind(models.TextChoices):
        USER = "user", "Agency user"
        STAFF = "staff", "Service staff"
        SYSTEM = "system", "System"

    agency = models.ForeignKey(
        Agency, on_delete=models.CASCADE, null=True, blank=True, related_name="audit_events"
    )
    actor = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_events"
    )
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    # Kept apart from ``actor`` so the trail survives the user's deletion.
    actor_email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=255, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["agency", "-created_at"], name="audit_agency_created"),
            models.Index(fields=["action", "-created_at"], name="audit_action_created"),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_email or self.actor_kind}"


class LoginCode(models.Model):
    """A one-time password for the portal, stored hashed, valid for minutes and a few tries."""

    email = models.EmailField()
    code_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["email", "-created_at"], name="logincode_email"),
            models.Index(fields=["ip_address", "-created_at"], name="logincode_ip"),
        ]

    def __str__(self) -> str:
        return f"login code for {self.email}"
