"""The message writer (``emails.delivery.mime.as_bytes``): the standard library's bytes, cheaper.

Each message is written by ``as_bytes`` and by the standard ``BytesGenerator`` with the same
multipart boundaries, and the two must be equal byte for byte.
"""

from __future__ import annotations

import itertools
import random
import string
from email import message_from_bytes
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from io import BytesIO

import pytest
from django.core.mail import BadHeaderError, EmailMultiAlternatives
from django.core.mail.message import forbid_multi_line_headers

from emails.delivery import mime
from emails.delivery.mime import _inline_part, _RelatedMessage, as_bytes
from emails.models import EmailAttachment

HTML = "<p>Your OTP is <b>123456</b>.</p>"


def stock_bytes(message: Message) -> bytes:
    buffer = BytesIO()
    BytesGenerator(buffer, mangle_from_=False).flatten(message, linesep="\r\n")
    return buffer.getvalue()


def fixed_boundaries(message: Message) -> Message:
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"boundary-{number}")
    return message


def django_message(
    *,
    subject: str = "Your appointment is confirmed",
    body: str = "Your OTP is 123456.",
    html: str = HTML,
    from_email: str = "Housing Board <notify@hdb.gov.sg>",
    to: tuple[str, ...] = ("citizen@example.com",),
    cc: tuple[str, ...] = (),
    headers: dict[str, str] | None = None,
) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=subject,
        body=body,
        from_email=from_email,
        to=list(to),
        cc=list(cc),
        reply_to=["help@hdb.gov.sg"],
        headers={"Message-ID": "<42.0123456789abcdef@postman.gov.sg>", **(headers or {})},
    )
    message.attach_alternative(html, "text/html")
    return message


def assert_same_as_stock(message: Message) -> bytes:
    written = as_bytes(fixed_boundaries(message))
    assert written == stock_bytes(message)
    return written


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="plain ASCII"),
        pytest.param(
            {
                "subject": "Janji temu anda — 预约确认",
                "from_email": "Lembaga Perumahan ✓ <notify@hdb.gov.sg>",
                "body": "Kod anda: 123456 — terima kasih",
                "html": "<p>Kod anda: <b>123456</b> — 谢谢</p>",
            },
            id="non-ASCII subject, display name and bodies",
        ),
        pytest.param({"subject": "Appointment " * 20}, id="a subject folded over lines"),
        pytest.param({"subject": "Tab\there"}, id="a tab in a header"),
        pytest.param({"subject": "x" * 69}, id="a header line of 78 characters"),
        pytest.param({"subject": "x" * 70}, id="a header line of 79 characters"),
        pytest.param({"subject": ""}, id="an empty header"),
        pytest.param(
            {"cc": tuple(f"person{n}@example.com" for n in range(12))}, id="a long address list"
        ),
        pytest.param({"body": "one\r\ntwo\rthree\nFrom here\n.\n\nend\n"}, id="mixed line ends"),
        pytest.param({"body": "word " * 300}, id="a body line over 998 characters"),
        pytest.param({"headers": {"X-Note": "ünïcödé"}}, id="an extra non-ASCII header"),
    ],
)
def test_it_writes_what_the_standard_generator_writes(changes):
    written = assert_same_as_stock(django_message(**changes).message())

    parsed = message_from_bytes(written)
    assert parsed.get_content_type() == "multipart/alternative"
    assert b"\r\n" in written
    assert b"\n" not in written.replace(b"\r\n", b"")


def test_it_writes_attachments_and_inline_parts_as_the_standard_generator_does():
    inline = EmailAttachment(
        position=1, filename="logo ✓.png", content_type="image/png", inline=True
    )
    message = _RelatedMessage(
        subject="Your report",
        body="See the report.",
        from_email="HDB <notify@hdb.gov.sg>",
        to=["citizen@example.com"],
        inline_parts=[_inline_part(inline, b"\x89PNG\r\n\x1a\nfake")],
    )
    message.attach_alternative('<p><img src="cid:1"></p>', "text/html")
    message.attach("relatório.pdf", b"%PDF-1.4 \x00\xff binary", "application/pdf")
    message.attach("notes.txt", "línea uno\nline two\n", "text/plain")

    written = assert_same_as_stock(message.message())

    parsed = message_from_bytes(written)
    related, pdf, notes = parsed.get_payload()
    assert related.get_content_type() == "multipart/related"
    assert pdf.get_payload(decode=True) == b"%PDF-1.4 \x00\xff binary"
    assert notes.get_payload(decode=True) == "línea uno\r\nline two\r\n".encode()
    assert related.get_payload()[1].get_payload(decode=True) == b"\x89PNG\r\n\x1a\nfake"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("ünïcödé", id="non-ASCII"),
        pytest.param("one\x0btwo", id="a vertical tab"),
        pytest.param("one\x1ctwo", id="a file separator"),
        pytest.param(Header("Grüße", "utf-8"), id="a Header object"),
    ],
)
def test_headers_django_would_not_pass_are_written_the_standard_way(value):
    # Django encodes or refuses these before the writer sees them; a plain Message does not.
    message = Message()
    message["X-Note"] = value
    message.set_payload("body")

    assert as_bytes(message) == stock_bytes(message)


def test_a_header_with_a_line_break_is_still_refused():
    message = django_message(subject="Hello\r\nBcc: victim@example.com")

    with pytest.raises(BadHeaderError):
        as_bytes(message.message())


def test_a_new_boundary_is_never_a_line_of_the_parts(monkeypatch):
    tokens = itertools.chain(["a" * 24, "b" * 24], itertools.repeat("c" * 24))
    monkeypatch.setattr(mime.secrets, "token_hex", lambda size: next(tokens))
    taken = "=_" + "a" * 24
    message = django_message(body=f"a line\n--{taken}\nthat looks like a boundary")

    written = as_bytes(message.message())

    parsed = message_from_bytes(written)
    assert parsed.get_boundary() == "=_" + "b" * 24
    text, html = parsed.get_payload()
    assert f"--{taken}" in text.get_payload()
    assert html.get_payload() == HTML


def test_boundaries_are_random_and_their_header_needs_no_folding():
    first = as_bytes(django_message().message())
    second = as_bytes(django_message().message())

    assert message_from_bytes(first).get_boundary() != message_from_bytes(second).get_boundary()
    headers = first.split(b"\r\n\r\n")[0].split(b"\r\n")
    content_type = next(line for line in headers if line.startswith(b"Content-Type:"))
    assert content_type.startswith(b"Content-Type: multipart/alternative; boundary=")
    assert len(content_type) <= 78


# --- the direct writer: the same bytes as the standard way -------------------------------------

SUBJECTS = [
    "Your appointment is confirmed",
    "",
    "Janji temu anda — 预约确认",
    "Appointment " * 8,  # folded by the standard way: not written directly
    "x" * 69,
    "x" * 70,
    "Tab\there",
    'Quotes "and" (parentheses), <angles>; colons: \\backslash',
]
SENDERS = [
    "Housing Board <notify@hdb.gov.sg>",
    "notify@hdb.gov.sg",
    '"Board, Housing" <notify@hdb.gov.sg>',
    "Lembaga Perumahan ✓ <notify@hdb.gov.sg>",
    "Bücher <notify@bücher.example>",
]
CCS = [[], ["officer@hdb.gov.sg"], [f"person{n}@example.com" for n in range(12)]]
REPLY_TOS = [[], ["help@hdb.gov.sg"], ["Help Desk <help@hdb.gov.sg>"]]
TEXTS = [
    "Your OTP is 123456.",
    "Kod anda: 123456 — 谢谢\n",
    "one\r\ntwo\rthree\nFrom here\n.\n\nend\n",
    "a" * 998,
    "a" * 999,
    "é" * 499,  # 998 bytes
    "é" * 500,  # 1,000 bytes
    "a" * 600 + "\x0b" + "a" * 600,  # two lines to str.splitlines, one line on the wire
    "line\u2028separator",
    "",
]
HTMLS = [HTML, "<p>谢谢</p>\n", "<p>" + "word " * 300 + "</p>", "<p>one</p>\r\n<p>two</p>\r"]


def envelopes(count: int, seed: int):
    chooser = random.Random(seed)
    for _ in range(count):
        yield (
            mime.Envelope(
                subject=chooser.choice(SUBJECTS),
                from_email=chooser.choice(SENDERS),
                to=[chooser.choice(["citizen@example.com", "Citizen Tan <tan@example.com>"])],
                cc=chooser.choice(CCS),
                reply_to=chooser.choice(REPLY_TOS),
                extra={
                    "Date": "Wed, 02 Dec 2026 08:00:00 -0000",
                    "Message-ID": "<42.0123456789abcdef@postman.gov.sg>",
                    mime.EMAIL_ID_HEADER: "42",
                },
            ),
            chooser.choice(TEXTS),
            chooser.choice(HTMLS),
        )


@pytest.fixture
def fixed_boundary(monkeypatch):
    monkeypatch.setattr(mime.secrets, "token_hex", lambda size: "f" * (2 * size))


def test_the_direct_writer_writes_what_the_standard_way_writes(fixed_boundary):
    direct = 0
    for envelope, text, html in envelopes(600, seed=20261202):
        written = mime._alternative_bytes(envelope, text, html)
        if written is not None:
            direct += 1
            assert written == mime._standard_bytes(envelope, text, html, ()), (envelope, text)
    # The sample holds both kinds (a fifth of it is written directly).
    assert 100 < direct < 600


@pytest.mark.parametrize(
    ("changes", "direct"),
    [
        pytest.param({}, True, id="plain ASCII"),
        pytest.param(
            {"subject": "Janji temu anda — 预约确认", "text": "Kod anda — 谢谢"},
            True,
            id="a non-ASCII subject and body",
        ),
        pytest.param({"text": "a" * 998}, True, id="a line of 998 bytes"),
        pytest.param({"text": "a" * 999}, False, id="a line over 998 bytes"),
        pytest.param({"subject": "Appointment " * 8}, False, id="a subject to fold"),
        pytest.param({"text": ""}, False, id="no text part"),
    ],
)
def test_which_messages_are_written_directly(fixed_boundary, changes, direct):
    envelope = mime.Envelope(
        subject=changes.get("subject", "Your appointment is confirmed"),
        from_email="Housing Board <notify@hdb.gov.sg>",
        to=["citizen@example.com"],
        cc=[],
        reply_to=["help@hdb.gov.sg"],
        extra={"Date": "Wed, 02 Dec 2026 08:00:00 -0000", "Message-ID": "<42.0@postman.gov.sg>"},
    )
    text = changes.get("text", "Your OTP is 123456.")

    written = mime._alternative_bytes(envelope, text, HTML)

    assert (written is not None) is direct
    if direct:
        assert written == mime._standard_bytes(envelope, text, HTML, ())


def test_the_direct_writer_refuses_a_header_with_a_line_break():
    envelope = mime.Envelope(
        subject="Hello\r\nBcc: victim@example.com",
        from_email="notify@hdb.gov.sg",
        to=["citizen@example.com"],
        cc=[],
        reply_to=[],
        extra={},
    )

    with pytest.raises(BadHeaderError):
        mime._alternative_bytes(envelope, "text", HTML)


def test_django_leaves_a_header_that_is_one_plain_line_as_it_is():
    # What lets the direct writer skip ``forbid_multi_line_headers`` for such values.
    chooser = random.Random(7)
    alphabet = string.ascii_letters + string.digits + string.punctuation + "    =?;,"
    for _ in range(3000):
        value = "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 69)))
        for name in ("Subject", "From", "X-Postman-Email-Id"):
            if mime._fits(name, value):
                assert forbid_multi_line_headers(name, value, "utf-8") == (name, value)
