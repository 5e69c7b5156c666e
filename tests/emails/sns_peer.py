"""A stand-in for Amazon SNS in tests: its signing key and certificate, the https server that
serves the certificate and answers SubscribeURL, and messages signed the way SNS signs them.

The https server listens on 127.0.0.1 with a certificate from a throwaway CA; tests trust that CA
through ``SNS_CERT_CA_BUNDLE`` and allowlist the host through ``SNS_CERT_HOST_PATTERN``. It
records every request, so a test can tell that nothing was fetched.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOPIC_ARN = "arn:aws:sns:ap-southeast-1:123456789012:postman-ses-events"
CERT_PATH = "/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
SNS_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    *,
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    ca: bool = False,
    ip: str | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        ).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class SnsPki:
    """The keys and certificates of one test session."""

    def __init__(self) -> None:
        self.signing_key = _key()
        self.signing_cert_pem = _pem(
            _certificate(
                subject="sns.amazonaws.com",
                key=self.signing_key,
                issuer="sns.amazonaws.com",
                issuer_key=self.signing_key,
            )
        )
        # An attacker's key and certificate: well-formed, just not SNS's.
        self.other_key = _key()
        self.expired_cert_pem = _pem(
            _certificate(
                subject="sns.amazonaws.com",
                key=self.signing_key,
                issuer="sns.amazonaws.com",
                issuer_key=self.signing_key,
                not_after=datetime.now(UTC) - timedelta(hours=1),
            )
        )
        ca_key = _key()
        ca = _certificate(
            subject="Test CA", key=ca_key, issuer="Test CA", issuer_key=ca_key, ca=True
        )
        self.ca_pem = _pem(ca)
        self.tls_key = _key()
        self.tls_cert_pem = _pem(
            _certificate(
                subject="127.0.0.1",
                key=self.tls_key,
                issuer="Test CA",
                issuer_key=ca_key,
                ip="127.0.0.1",
            )
        )

    def write_tls_files(self, directory: Path) -> tuple[Path, Path, Path]:
        """(CA bundle, server certificate, server key) as PEM files."""
        ca, cert, key = directory / "ca.pem", directory / "tls.pem", directory / "tls.key"
        ca.write_bytes(self.ca_pem)
        cert.write_bytes(self.tls_cert_pem)
        key.write_bytes(
            self.tls_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return ca, cert, key


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path == CERT_PATH:
            body, content_type = self.server.cert_pem, "application/x-pem-file"
        elif self.path.startswith("/?Action=ConfirmSubscription"):
            body = b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>"
            body += TOPIC_ARN.encode() + b":1</SubscriptionArn></ConfirmSubscriptionResult>"
            body += b"</ConfirmSubscriptionResponse>"
            content_type = "text/xml"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]
    cert_pem: bytes


class SnsHttpsServer:
    """https://127.0.0.1:<port>: the signing certificate at CERT_PATH and SubscribeURL."""

    def __init__(self, pki: SnsPki, cert_file: Path, key_file: Path) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.requests = []
        self._server.cert_pem = pki.signing_cert_pem
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        # A short poll interval: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def cert_url(self) -> str:
        return self.base_url + CERT_PATH

    @property
    def requests(self) -> list[str]:
        return self._server.requests

    def serve(self, cert_pem: bytes) -> None:
        self._server.cert_pem = cert_pem

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# The string to sign, written out from the SNS developer guide ("Verifying the signatures of
# Amazon SNS messages") rather than imported, so a mistake in the service's version shows.
_NOTIFICATION_FIELDS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
_CONFIRMATION_FIELDS = [
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
]


def sign(envelope: dict, key: rsa.RSAPrivateKey, version: str = "1") -> dict:
    fields = _NOTIFICATION_FIELDS if envelope["Type"] == "Notification" else _CONFIRMATION_FIELDS
    text = "".join(f"{name}\n{envelope[name]}\n" for name in fields if name in envelope)
    signature = key.sign(text.encode(), padding.PKCS1v15(), SNS_HASHES[version]())
    return {
        **envelope,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
    }


def notification(message: dict, *, cert_url: str, message_id: str | None = None) -> dict:
    """An unsigned SNS Notification envelope carrying ``message`` (an SES event) as SNS does."""
    base = cert_url.rsplit("/", 1)[0]
    return {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": TOPIC_ARN,
        "Message": json.dumps(message),
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": (
            f"{base}/?Action=Unsubscribe&SubscriptionArn={TOPIC_ARN}:"
            "9d8a7c6b-1234-4f5e-8a9b-0c1d2e3f4a5b"
        ),
    }


def subscription_confirmation(*, cert_url: str, subscribe_host: str | None = None) -> dict:
    base = subscribe_host or cert_url.rsplit("/", 1)[0]
    token = "2336412f37fb687f5d51e6e2425c464de257b1d6bea1d6c8a2d4d02d8e1e4ff9" * 2
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": TOPIC_ARN,
        "Message": (
            f"You have chosen to subscribe to the topic {TOPIC_ARN}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message."
        ),
        "SubscribeURL": f"{base}/?Action=ConfirmSubscription&TopicArn={TOPIC_ARN}&Token={token}",
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SigningCertURL": cert_url,
    }
