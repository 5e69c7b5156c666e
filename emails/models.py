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

    # No index of its own: every index below starts with the agency, and each one more costs
    # every send's insert.
    agency = models.ForeignKey(
        Agency, on_delete=models.CASCADE, related_name="emails", db_index=False
    )
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
            # Staff's admin, across agencies (docs/staff-and-suppressions.md). Its lists are in id
            # order, never created_at order: an index ordered by created_at but not led by the
            # agency could tempt the planner away from the agency indexes above for a tenant's
            # `ORDER BY created_at LIMIT n`. pattern_ops makes `LIKE 'x%'` indexable under any
            # collation.
            models.Index(fields=["status", "-id"], name="email_status_id"),
            models.Index(
                fields=["tag", "-id"], name="email_tag_id", condition=models.Q(tag__isnull=False)
            ),
            models.Index(
                fields=["recipient"], name="email_recipient", opclasses=["varchar_pattern_ops"]
            ),
            # The date filter's range; one column, so never a tenant list's (created_at, id) order.
            models.Index(fields=["created_at"], name="email_created_at"),
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

    # Looked up through the unique (email, address) index: no index of its own.
    email = models.ForeignKey(
        Email, on_delete=models.CASCADE, related_name="recipients", db_index=False
    )
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

    @property
    def is_primary(self) -> bool:
        """The ``to`` recipient, whom the email's own status follows."""
        return self.kind == self.Kind.TO


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
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.address


class RateLimitWindow(models.Model):
    """The current one-second send window of an agency (the database rate-limit backend)."""

    agency = models.OneToOneField(Agency, on_delete=models.CASCADE, primary_key=True)
    window = models.BigIntegerField()
    count = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.agency_id}@{self.window}: {self.count}"


class PendingTask(models.Model):
    """A task of ``name`` is queued on the ORM broker and has not started (until ``until``,
    in case it is lost): the ORM broker's counterpart of the key that says so beside the
    Redis queue (``emails.queue``). A started task sets ``until`` in the past."""

    name = models.CharField(primary_key=True, max_length=200)
    until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} until {self.until:%Y-%m-%d %H:%M:%S}"


class EmailEvent(models.Model):
    """One thing that happened to one recipient of an email, in the order it happened.

    Rows are never updated: a late or duplicate event still gets its row (unless its provider
    event id was seen before), and the recipient's status only ever moves up (STATUS_RANK)."""

    class Type(models.TextChoices):
        ACCEPTED = "accepted"
        SENT = "sent"
        DELIVERED = "delivered"
        DELAYED = "delayed"
        OPENED = "opened"
        BOUNCED = "bounced"
        COMPLAINT = "complaint"
        REJECTED = "rejected"
        DEFERRED = "deferred"

    email = models.ForeignKey(Email, on_delete=models.CASCADE, related_name="events")
    recipient = models.ForeignKey(
        EmailRecipient, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    type = models.CharField(max_length=10, choices=Type.choices)
    occurred_at = models.DateTimeField()
    provider_event_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    detail = models.CharField(max_length=1000, blank=True)
    payload = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["email", "occurred_at"], name="event_email_occurred")]

    def __str__(self) -> str:
        return f"{self.type} for email {self.email_id}"


class Suppression(models.Model):
    """An address one agency will not send to (its own list, beside the global blacklist)."""

    class Source(models.TextChoices):
        COMPLAINT = "complaint", "Complaint"
        ADMIN = "admin", "Agency admin"
        IMPORT = "import", "CSV import"

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="suppressions")
    address = models.EmailField(max_length=254)
    source = models.CharField(max_length=10, choices=Source.choices)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agency", "address"], name="suppression_unique")
        ]
        indexes = [models.Index(fields=["agency", "-created_at"], name="suppression_agency")]

    def __str__(self) -> str:
        return self.address


class SenderDomain(models.Model):
    """A domain an agency sends from, proven by DNS (ownership TXT + DKIM key)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        VERIFIED = "verified", "Verified"
        FAILING = "failing", "Failing (grace period)"
        SUSPENDED = "suspended", "Suspended"

    class Check(models.TextChoices):
        UNCHECKED = "unchecked", "Not checked yet"
        VERIFIED = "verified", "Verified"
        MISSING = "missing", "Missing"
        WRONG = "wrong", "Wrong value"

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="sender_domains")
    domain = models.CharField(max_length=253)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    ownership_token = models.CharField(max_length=64)
    dkim_selector = models.CharField(max_length=63)
    # PEM encrypted with Fernet (emails/dkim.py); never shown in the portal or admin, never logged.
    dkim_private_key = models.TextField()
    dkim_public_key = models.TextField()
    ownership_check = models.CharField(max_length=10, choices=Check.choices, default="unchecked")
    dkim_check = models.CharField(max_length=10, choices=Check.choices, default="unchecked")
    spf_check = models.CharField(max_length=10, choices=Check.choices, default="unchecked")
    dmarc_check = models.CharField(max_length=10, choices=Check.choices, default="unchecked")
    last_checked_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agency", "domain"], name="sender_domain_per_agency"),
            # At most one agency holds a domain as verified (or in its grace period).
            models.UniqueConstraint(
                fields=["domain"],
                name="sender_domain_one_owner",
                condition=models.Q(status__in=["verified", "failing"]),
            ),
        ]

    def __str__(self) -> str:
        return self.domain


class IdempotentRequest(models.Model):
    """A send request made with an ``Idempotency-Key``, kept 24 hours so that a retry of it
    gets the original response instead of sending the email again (SPEC §5)."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the parsed request (fields and file digests): a different payload under the
    # same key is a client bug, refused with 409.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agency", "key"], name="idempotent_request_key")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotent_request_created")]

    def __str__(self) -> str:
        return self.key
