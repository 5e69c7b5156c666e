"""DNS look-ups for sender domain checks (dnspython).

``DNS_NAMESERVERS`` (``host`` or ``host:port``, IPv6 as ``[addr]:port``) points the resolver at
specific servers, e.g. an agency network's internal resolver, or the test suite's local server;
empty means the system's ``/etc/resolv.conf``. Nothing is cached here: a "Check now" must see a
record the moment it is published (the upstream resolver's own cache still applies).
"""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Large enough for a 2048-bit DKIM key in one UDP answer; the common safe EDNS payload size.
EDNS_PAYLOAD = 1232


class DnsUnavailable(Exception):
    """The question could not be answered (timeout, SERVFAIL, no resolver): neither "there is
    no such record" nor a value, so a check must not change anything on the strength of it."""


def parse_nameserver(value: str) -> dns.nameserver.Do53Nameserver:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1`` or ``[::1]:5353``."""
    value = value.strip()
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ImproperlyConfigured(f"DNS_NAMESERVERS: cannot parse {value!r}")
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        ipaddress.ip_address(host)
        port = int(port)
    except ValueError:
        raise ImproperlyConfigured(
            f"DNS_NAMESERVERS: {value!r} is not an IP address with an optional port"
        ) from None
    if not 0 < port < 65536:
        raise ImproperlyConfigured(f"DNS_NAMESERVERS: bad port in {value!r}")
    return dns.nameserver.Do53Nameserver(host, port)


def make_resolver() -> dns.resolver.Resolver:
    servers = [parse_nameserver(value) for value in settings.DNS_NAMESERVERS if value.strip()]
    try:
        resolver = dns.resolver.Resolver(configure=not servers)
    except dns.resolver.NoResolverConfiguration as exc:
        raise DnsUnavailable("no DNS resolver is configured") from exc
    if servers:
        resolver.nameservers = servers
    resolver.lifetime = settings.DNS_TIMEOUT
    resolver.timeout = settings.DNS_TIMEOUT
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    return resolver


def txt_records(name: str, *, resolver: dns.resolver.Resolver | None = None) -> list[str]:
    """The TXT records at ``name``, each one's strings joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2:
    a long record is published as several strings and means their concatenation).

    An empty list when the name does not exist or has no TXT record; ``DnsUnavailable`` when
    the answer is unknown. Values that are not UTF-8 are decoded leniently: they can only be
    "wrong", never match an expected value.
    """
    resolver = resolver or make_resolver()
    try:
        answer = resolver.resolve(name, dns.rdatatype.TXT, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.YXDOMAIN) as exc:
        raise DnsUnavailable(f"{name}: {exc.__class__.__name__}") from exc
    except dns.exception.DNSException as exc:
        raise DnsUnavailable(f"{name}: {exc}") from exc
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]
