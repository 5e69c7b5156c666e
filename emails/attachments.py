"""Attachment checks: size limits, type by magic bytes then extension, inline ``cid:`` parts."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import filetype
from django.core.files.uploadedfile import UploadedFile

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024  # one file must be smaller; all together at most this

ALLOWED_EXTENSIONS = frozenset({
    "asc", "avi", "bmp", "csv", "dgn", "docx", "dwf", "dwg", "dxf", "ent", "gif", "jpeg", "jpg",
    "mpeg", "mpg", "mpp", "odb", "odf", "odg", "ods", "pdf", "png", "pptx", "rtf", "sxc", "sxd",
    "sxi", "sxw", "tif", "tiff", "txt", "wmv", "xlsx",
})  # fmt: skip
# Formats that are ZIP or OLE containers underneath: magic bytes only say "zip"/"doc", so the
# extension decides, as long as the container matches.
_CONTAINER_EXTENSIONS = {
    "zip": {"docx", "xlsx", "pptx", "odb", "odf", "odg", "ods", "sxc", "sxd", "sxi", "sxw"},
    "doc": {"mpp"},
    "xls": {"mpp"},
    "ppt": {"mpp"},
}
_SNIFF_BYTES = 8192
_CID_RE = re.compile(r"""["']cid:(\d+)["']""")
_UNSAFE_FILENAME_RE = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass
class Attachment:
    upload: UploadedFile
    filename: str
    size: int
    md5: str

    @property
    def extension(self) -> str:
        _, dot, ext = self.filename.rpartition(".")
        return ext.lower() if dot else ""

    def metadata(self) -> dict:
        return attachment_metadata(filename=self.filename, size=self.size, md5=self.md5)


def attachment_metadata(*, filename: str, size: int, md5: str) -> dict:
    """An attachment as the email object lists it (``attachments_metadata``, Postman's shape)."""
    return {"fileName": filename, "fileSize": size, "hash": md5}


def clean_filename(name: str | None) -> str:
    """The client's filename without directories or control characters (it ends up in a
    MIME header)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = _UNSAFE_FILENAME_RE.sub("", base).strip()
    return base[:255] or "attachment"


def read_attachment(upload: UploadedFile) -> Attachment:
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return Attachment(
        upload=upload,
        filename=clean_filename(upload.name),
        size=upload.size,
        md5=digest.hexdigest(),
    )


def is_allowed_type(attachment: Attachment) -> bool:
    head = attachment.upload.read(_SNIFF_BYTES)
    attachment.upload.seek(0)
    kind = filetype.guess(head)
    if kind is None:
        # Text formats (csv, txt, asc, dxf ...) have no magic bytes: the extension decides.
        return attachment.extension in ALLOWED_EXTENSIONS
    if kind.extension in ALLOWED_EXTENSIONS:
        return True
    return attachment.extension in _CONTAINER_EXTENSIONS.get(kind.extension, ())


def inline_positions(html_body: str) -> set[int]:
    """Attachment positions the body references as ``cid:N`` (either quote style)."""
    return {int(n) for n in _CID_RE.findall(html_body)}
