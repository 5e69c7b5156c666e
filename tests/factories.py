from __future__ import annotations

import hashlib
from datetime import timedelta

import factory
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts.models import Agency, AgencyDomain, User
from emails.attachments import attachment_metadata
from emails.models import (
    BlacklistEntry,
    Email,
    EmailAttachment,
    EmailRecipient,
    VerifiedSender,
)


class AgencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agency
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Agency {n}")

    @factory.post_generation
    def domain(obj, create, extracted, **kwargs):
        if create:
            AgencyDomain.objects.create(agency=obj, domain=extracted or f"agency{obj.pk}.gov.sg")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    agency = factory.SubFactory(AgencyFactory)
    email = factory.LazyAttributeSequence(lambda o, n: f"user{n}@{o.agency.domains.first().domain}")
    role = User.Role.ADMIN


class EmailFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Email
        skip_postgeneration_save = True

    agency = factory.SubFactory(AgencyFactory)
    sender = "Postman <info@mail.postman.gov.sg>"
    recipient = factory.Sequence(lambda n: f"recipient{n}@example.com")
    reply_to = "owner@agency.gov.sg"
    params = factory.LazyAttribute(
        lambda o: {"subject": "Your OTP", "body": "<p>Your OTP is <b>123456</b></p>"}
    )
    subject = factory.LazyAttribute(lambda o: o.params["subject"])
    html = factory.LazyAttribute(lambda o: o.params["body"])
    created_at = factory.LazyFunction(timezone.now)
    updated_at = factory.LazyAttribute(lambda o: o.created_at)

    @factory.post_generation
    def with_recipients(obj, create, extracted, **kwargs):
        if not create:
            return
        rows = [EmailRecipient(email=obj, kind="to", address=obj.recipient)]
        rows += [EmailRecipient(email=obj, kind="cc", address=a) for a in obj.cc]
        rows += [EmailRecipient(email=obj, kind="bcc", address=a) for a in obj.bcc]
        EmailRecipient.objects.bulk_create(rows)


class BlacklistEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BlacklistEntry

    address = factory.Sequence(lambda n: f"blocked{n}@example.com")


class VerifiedSenderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VerifiedSender

    agency = factory.SubFactory(AgencyFactory)
    address = factory.Sequence(lambda n: f"sender{n}@example.org")
    verified_at = factory.LazyFunction(timezone.now)


class EmailAttachmentFactory(factory.django.DjangoModelFactory):
    """An attachment of ``email``; pass ``content`` (bytes) and ``position``."""

    class Meta:
        model = EmailAttachment
        # The hook below saves what it changes itself.
        skip_postgeneration_save = True

    class Params:
        content = b"attachment content"

    email = factory.SubFactory(EmailFactory)
    position = 0
    filename = "report.txt"
    content_type = "text/plain"
    inline = False
    file = factory.LazyAttribute(lambda o: ContentFile(o.content, name=o.filename))
    size = factory.LazyAttribute(lambda o: len(o.content))
    md5 = factory.LazyAttribute(lambda o: hashlib.md5(o.content).hexdigest())  # noqa: S324

    @factory.post_generation
    def listed_on_email(self, create, extracted, **kwargs):
        # As the send API records them: an email with attachments lists them in
        # attachments_metadata, which is how the worker knows to read them.
        if create:
            listed = [*(self.email.attachments_metadata or [])]
            listed.append(attachment_metadata(filename=self.filename, size=self.size, md5=self.md5))
            self.email.attachments_metadata = listed
            type(self.email).objects.filter(id=self.email.id).update(attachments_metadata=listed)


def oldest_first(count: int) -> list[Email]:
    """``count`` emails created a second apart, the oldest first."""
    now = timezone.now()
    return [EmailFactory(created_at=now - timedelta(seconds=count - i)) for i in range(count)]
