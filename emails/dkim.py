"""DKIM keys and signatures for sender domains (RFC 6376), with dkimpy and cryptography.

Each domain gets its own RSA 2048 key pair. The private key is stored encrypted (Fernet, see
``encrypt_private_key``), decrypted only here, at signing time, and never logged: the exceptions
raised while signing are logged by type and domain only.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from functools import lru_cache
from typing import TYPE_CHECKING

import dkim
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from emails.addresses import default_from_addresses, domain_of, parse_mailbox
from emails.models import Email, SenderDomain
from emails.sender_selectors import SENDING_STATUSES

if TYPE_CHECKING:
    from emails.delivery.mime import BuiltMessage

logger = logging.getLogger(__name__)

KEY_SIZE = 2048
# SPEC/issue 6: the headers a receiver must see unchanged. Only those present are signed.
SIGNED_HEADERS = [
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
]
CANONICALIZATION = (b"relaxed", b"relaxed")
_HKDF_INFO = b"postman-email:dkim-private-key:v1"


def generate_key_pair() -> tuple[str, str]:
    """A new ``(private key PEM, public key base64)``; the base64 is the DKIM record's ``p=``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, which dkimpy reads
        serialization.NoEncryption(),
    ).decode()
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, base64.b64encode(public_der).decode()


def dkim_record_value(public_key: str) -> str:
    return f"v=DKIM1; k=rsa; p={public_key}"


def _fernet_key(secret: str) -> bytes:
    # Any secret string becomes a Fernet key; the label keeps it apart from every other use of
    # the same secret (sessions, signed links).
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode()
    )
    return base64.urlsafe_b64encode(derived)


@lru_cache(maxsize=4)
def _fernet(secrets: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(secret)) for secret in secrets])


def _encryption() -> MultiFernet:
    """The first secret encrypts, every one decrypts: rotation is "prepend the new one"."""
    secrets = settings.DKIM_KEY_ENCRYPTION_KEYS or [
        settings.SECRET_KEY,
        *settings.SECRET_KEY_FALLBACKS,
    ]
    return _fernet(tuple(secrets))


def encrypt_private_key(private_pem: str) -> str:
    return _encryption().encrypt(private_pem.encode()).decode()


def decrypt_private_key(stored: str) -> str:
    """Raises ``cryptography.fernet.InvalidToken`` when no configured secret opens it."""
    return _encryption().decrypt(stored.encode()).decode()


def dkim_sign(*, message: bytes, domain: str, selector: str, private_pem: str) -> bytes:
    """``message`` with a ``DKIM-Signature`` header (rsa-sha256, relaxed/relaxed) prepended."""
    signature = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        private_pem.encode(),
        canonicalize=CANONICALIZATION,
        signature_algorithm=b"rsa-sha256",
        include_headers=SIGNED_HEADERS,
    )
    return signature + message


def signing_domain_for(email: Email) -> SenderDomain | None:
    """The agency's sending-enabled domain that ``email``'s from address is on (exact match)."""
    mailbox = parse_mailbox(email.sender)
    if mailbox is None or mailbox.address in default_from_addresses():
        # The service's own default sender is never an agency's domain: no query.
        return None
    return SenderDomain.objects.filter(
        agency_id=email.agency_id, domain=domain_of(mailbox.address), status__in=SENDING_STATUSES
    ).first()


def dkim_sign_for(*, email: Email, message: bytes) -> bytes:
    """``message`` DKIM-signed when ``email`` is from a verified (or failing, still in its grace
    period) domain of its agency; unchanged otherwise.

    A key that cannot be used (its encryption secret was rotated away, a corrupt row) is logged
    as an error and the message goes out unsigned: retrying cannot repair the key, and an
    unsigned message still passes SPF, whereas holding the agency's mail back would not help.
    """
    sender_domain = signing_domain_for(email)
    if sender_domain is None:
        return message
    try:
        private_pem = decrypt_private_key(sender_domain.dkim_private_key)
        return dkim_sign(
            message=message,
            domain=sender_domain.domain,
            selector=sender_domain.dkim_selector,
            private_pem=private_pem,
        )
    except (InvalidToken, dkim.DKIMException, ValueError) as exc:
        # The exception's text could quote key material: log its type only.
        logger.error(
            "Email %s: DKIM signing for %s failed (%s); sending unsigned",
            email.id,
            sender_domain.domain,
            exc.__class__.__name__,
        )
        return message


def dkim_sign_built(*, email: Email, built: BuiltMessage) -> BuiltMessage:
    """``built`` with its message passed through ``dkim_sign_for``: the delivery worker's one
    call, right before the hand-off, so that nothing can change a header after signing."""
    return dataclasses.replace(built, message=dkim_sign_for(email=email, message=built.message))
