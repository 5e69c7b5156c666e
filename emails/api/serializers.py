"""The email object of the API (SPEC §4)."""

from __future__ import annotations

from datetime import UTC, datetime

from rest_framework import serializers


def iso_millis(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with milliseconds and ``Z``, as the reference API writes timestamps."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class IsoMillisField(serializers.DateTimeField):
    def to_representation(self, value):
        return iso_millis(value)


class ParamsSerializer(serializers.Serializer):
    subject = serializers.CharField()
    body = serializers.CharField()
    # SerializerMethodField-free optional keys: the stored dict is rendered as is.
    reply_to = serializers.CharField(required=False)

    def to_representation(self, instance):
        return instance


class AttachmentMetadataSerializer(serializers.Serializer):
    fileName = serializers.CharField()
    fileSize = serializers.IntegerField()
    hash = serializers.CharField(help_text="MD5 of the file, in hex")


def _strings(values: list | None) -> list | None:
    # What ListField(child=CharField()) renders.
    return None if values is None else [None if v is None else str(v) for v in values]


class EmailSerializer(serializers.Serializer):
    id = serializers.CharField()
    from_ = serializers.CharField(source="sender")
    recipient = serializers.EmailField()
    params = ParamsSerializer(required=False)
    attachments_metadata = AttachmentMetadataSerializer(many=True, allow_null=True)
    status = serializers.CharField()
    error_code = serializers.CharField(allow_null=True)
    error_sub_type = serializers.CharField(allow_null=True)
    created_at = IsoMillisField()
    updated_at = IsoMillisField()
    accepted_at = IsoMillisField(allow_null=True)
    sent_at = IsoMillisField(allow_null=True)
    delivered_at = IsoMillisField(allow_null=True)
    opened_at = IsoMillisField(allow_null=True)
    classification = serializers.CharField(allow_null=True)
    tag = serializers.CharField(allow_null=True)
    cc = serializers.ListField(child=serializers.EmailField())
    bcc = serializers.ListField(child=serializers.EmailField())
    mode = serializers.CharField(help_text="`live`, or `test` for emails sent with a test key")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        if self.context.get("exclude_params"):
            fields.pop("params")
        return fields

    def to_representation(self, instance) -> dict:
        """The email object, written out by hand.

        DRF's generic path deep-copies every declared field for each email and then calls each
        one in turn, which cost more CPU than everything else in a GET by id
        (docs/performance.md). The output is the same, key for key and in the same order (the
        declared fields, ``from`` last); the declared fields still describe the schema, and a test
        holds the two to each other.
        """
        data = {"id": str(instance.id), "recipient": instance.recipient}
        if not self.context.get("exclude_params"):
            data["params"] = instance.params
        metadata = instance.attachments_metadata
        data["attachments_metadata"] = (
            None
            if metadata is None
            else [
                {
                    "fileName": str(m["fileName"]),
                    "fileSize": int(m["fileSize"]),
                    "hash": str(m["hash"]),
                }
                for m in metadata
            ]
        )
        data["status"] = instance.status
        data["error_code"] = instance.error_code
        data["error_sub_type"] = instance.error_sub_type
        data["created_at"] = iso_millis(instance.created_at)
        data["updated_at"] = iso_millis(instance.updated_at)
        data["accepted_at"] = iso_millis(instance.accepted_at)
        data["sent_at"] = iso_millis(instance.sent_at)
        data["delivered_at"] = iso_millis(instance.delivered_at)
        data["opened_at"] = iso_millis(instance.opened_at)
        data["classification"] = instance.classification
        data["tag"] = instance.tag
        data["cc"] = _strings(instance.cc)
        data["bcc"] = _strings(instance.bcc)
        data["mode"] = instance.mode
        data["from"] = instance.sender
        return data


class EmailListSerializer(serializers.Serializer):
    has_more = serializers.BooleanField()
    data = EmailSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
