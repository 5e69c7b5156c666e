"""The hand-written email object (``EmailSerializer.to_representation``) against DRF's generic
rendering of the declared fields: the same keys, in the same order, with the same values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rest_framework import serializers

from emails.api.serializers import EmailSerializer
from tests.factories import EmailFactory

T0 = datetime(2024, 5, 1, 2, 3, 4, 567891, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def generic(email, **context) -> dict:
    """What DRF renders from the declared fields (the path the hand-written method replaces)."""
    serializer = EmailSerializer(email, context=context)
    return dict(serializers.Serializer.to_representation(serializer, email))


def test_it_renders_a_new_email_like_drf(agency):
    email = EmailFactory(agency=agency, created_at=T0, updated_at=T0)

    data = EmailSerializer(email).data

    assert list(data.items()) == list(generic(email).items())


def test_it_renders_every_field_set_like_drf(agency):
    email = EmailFactory(
        agency=agency,
        status="OPENED",
        error_code="Soft bounce",
        error_sub_type="General",
        cc=["a@example.com", "b@example.com"],
        bcc=["c@example.com"],
        classification="URGENT",
        tag="otp",
        attachments_metadata=[{"fileName": "a.pdf", "fileSize": 12, "hash": "0" * 32}],
        params={"subject": "S", "body": "B", "from": "x@y.gov.sg", "reply_to": "r@y.gov.sg"},
        created_at=T0,
        updated_at=T0,
        accepted_at=T0,
        sent_at=T0,
        delivered_at=T0,
        opened_at=T0,
        mode="test",
    )

    data = EmailSerializer(email).data

    assert list(data.items()) == list(generic(email).items())
    assert data["created_at"] == "2024-05-01T02:03:04.567Z"


def test_it_leaves_out_params_like_drf(agency):
    email = EmailFactory(agency=agency)

    data = EmailSerializer(email, context={"exclude_params": True}).data

    assert "params" not in data
    assert list(data.items()) == list(generic(email, exclude_params=True).items())


def test_a_list_renders_each_email_by_hand(agency):
    emails = EmailFactory.create_batch(2, agency=agency)

    data = EmailSerializer(emails, many=True).data

    assert [dict(item) for item in data] == [generic(email) for email in emails]
