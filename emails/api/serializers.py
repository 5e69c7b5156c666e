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

    def to_representation(self, instance):
        return super().to_representation(instance)


class EmailListSerializer(serializers.Serializer):
    has_more = serializers.BooleanField()
    data = EmailSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
