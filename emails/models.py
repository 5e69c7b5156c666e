from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Agency


class Status(models.TextChoices):
    """Delivery status, in precedence order: a status never moves to a lower one."""

    UNSENT = "UNSENT"
    ACCEPTED = "ACCEPTED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    OPENED = "OPENED"
    BOUNCED = "BOUNCED"
    COMPLAINT = "COMPLAINT"


STATUS_RANK = {status: rank for rank, status in enumerate(Status.values)}


class Classification(models.TextChoices):
    URGENT = "URGENT"
    FOR_ACTION = "FOR_ACTION"
    FOR_INFO = "FOR_INFO"


class Email(models.Model):
    """One email sent through the API.

    The row is both the API resource and the delivery queue record: the send request inserts it
    UNSENT, and a worker claims it (``claimed_until`` is its lease) before handing it to the relay.
    ``status`` mirrors the primary recipient's status so that lists filter on one indexed column.
    """

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="emails")
    api_key = models.ForeignKey(
        "apikeys.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="emails"
    )
    mode = models.CharField(max_length=4, default="live")
    sender = models.CharField("from", max_length=512)
    recipient = models.EmailField(max_length=254)
    reply_to = models.EmailField(max_length=254, blank=True)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    # The raw input as the client sent it (the API's ``params``) ...
    params = models.JSONField()
    # ... and what is actually sent: the sanitised subject (one line, no tags) and HTML body.
    subject = models.TextField()
    html = models.TextField()
    attachments_metadata = models.JSONField(null=True, blank=True)
    classification = models.CharField(
        max_length=10, choices=Classification.choices, null=True, blank=True
    )
    tag = models.CharField(max_length=255, null=True, blank=True)
    disable_tracking = models.BooleanField(default=False)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNSENT)
    error_code = models.CharField(max_length=255, null=True, blank=True)
    error_sub_type = models.CharField(max_length=255, null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)

    message_id = models.CharField(max_length=255, blank=True)
    provider_message_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)

    # Delivery bookkeeping.
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_smtp_response = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["agency", "-created_at", "-id"], name="email_agency_created"),
            models.Index(fields=["agency", "-updated_at", "-id"], name="email_agency_updated"),
            models.Index(fields=["agency", "status", "-created_at"], name="email_agency_status"),
            models.Index(fields=["agency", "tag", "-created_at"], name="email_agency_tag"),
            # The worker's sweep for emails whose hand-off has not happened yet.
            models.Index(
                fields=["created_at"],
                name="email_pending",
                condition=models.Q(status="UNSENT", error_code__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["agency", "idempotency_key"],
                name="email_idempotency_key",
                condition=models.Q(idempotency_key__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"Email {self.pk} to {self.recipient}"


class EmailRecipient(models.Model):
    """One envelope recipient of an email (the primary recipient, a cc or a bcc)."""

    class Kind(models.TextChoices):
        TO = "to"
        CC = "cc"
        BCC = "bcc"

    email = models.ForeignKey(Email, on_delete=models.CASCADE, related_name="recipients")
    kind = models.CharField(max_length=3, choices=Kind.choices)
    address = models.EmailField(max_length=254)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNSENT)
    error_code = models.CharField(max_length=255, null=True, blank=True)
    error_sub_type = models.CharField(max_length=255, null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["email", "address"], name="recipient_unique_address")
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.address}"


def attachment_path(instance: EmailAttachment, filename: str) -> str:
    # The stored name never contains the client's filename: it is kept only as metadata.
    return f"attachments/{instance.email_id}/{instance.position}"


class EmailAttachment(models.Model):
    email = models.ForeignKey(Email, on_delete=models.CASCADE, related_name="attachments")
    position = models.PositiveSmallIntegerField()
    file = models.FileField(upload_to=attachment_path, max_length=255)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    md5 = models.CharField(max_length=32)
    inline = models.BooleanField(default=False)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["email", "position"], name="attachment_position")
        ]

    def __str__(self) -> str:
        return self.filename


class BlacklistEntry(models.Model):
    """The global blacklist: no email is ever sent to these addresses, by any agency."""

    class Source(models.TextChoices):
        STAFF = "staff", "Staff"
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        COMPLAINT = "complaint", "Complaint"

    address = models.EmailField(max_length=254, unique=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.STAFF)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )

    class Meta:
        verbose_name = "blacklist entry"
        verbose_name_plural = "blacklist"

    def __str__(self) -> str:
        return self.address


class VerifiedSender(models.Model):
    """A from-address verified for an agency."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="verified_senders")
    address = models.EmailField(max_length=254, unique=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.address


class RateLimitWindow(models.Model):
    """The current one-second send window of an agency (the database rate-limit backend)."""

    agency = models.OneToOneField(Agency, on_delete=models.CASCADE, primary_key=True)
    window = models.BigIntegerField()
    count = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.agency_id}@{self.window}: {self.count}"
