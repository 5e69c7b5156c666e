"""A real DNS server for tests: UDP and TCP on 127.0.0.1, answering TXT records from a dict.

Built on dnspython's message classes and the standard library's socketserver, so the sender
domain checks and dkimpy's key look-ups go over the wire exactly as in production. Names it does
not know get NXDOMAIN, known names without TXT get an empty answer (NoAnswer), names in
``silent`` get no reply at all (a timeout) and names in ``failing`` get SERVFAIL.
"""

from __future__ import annotations

import socketserver
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.resolver
import dns.rrset

# One character-string of a TXT record holds at most 255 bytes; longer values are split the way
# DNS hosting providers publish them.
TXT_CHUNK = 255


def _name(name: str) -> str:
    return name.rstrip(".").lower()


class DnsServer:
    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.other_names: set[str] = set()  # names that exist without a TXT record
        self.silent: set[str] = set()
        self.failing: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self.port = 0
        self._servers: list[socketserver.BaseServer] = []

    # -- records ---------------------------------------------------------------------------------

    def add_txt(self, name: str, value: str) -> None:
        self.txt.setdefault(_name(name), []).append(value)

    def set_txt(self, name: str, *values: str) -> None:
        self.txt[_name(name)] = list(values)

    def remove(self, name: str) -> None:
        self.txt.pop(_name(name), None)

    def publish(self, records) -> None:
        """Publish what the portal shows (``DnsRecord``s: name and value)."""
        for record in records:
            self.add_txt(record.name, record.value)

    # -- answering -------------------------------------------------------------------------------

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = _name(question.name.to_text())
        self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.failing:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name in self.txt:
            if question.rdtype == dns.rdatatype.TXT:
                rdatas = [
                    dns.rdtypes.ANY.TXT.TXT(
                        dns.rdataclass.IN,
                        dns.rdatatype.TXT,
                        [value[i : i + TXT_CHUNK].encode() for i in range(0, len(value), TXT_CHUNK)]
                        or [b""],
                    )
                    for value in self.txt[name]
                ]
                response.answer.append(dns.rrset.from_rdata_list(question.name, 60, rdatas))
        elif name not in self.other_names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    # -- serving ---------------------------------------------------------------------------------

    def start(self) -> None:
        dns_server = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = dns_server.answer(data)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                header = self.request.recv(2)
                if len(header) < 2:
                    return
                (length,) = struct.unpack("!H", header)
                data = b""
                while len(data) < length:
                    chunk = self.request.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = dns_server.answer(data)
                if reply is not None:
                    self.request.sendall(struct.pack("!H", len(reply)) + reply)

        # The same port for both, as a real server: dnspython retries a truncated UDP answer
        # over TCP.
        for _ in range(20):
            udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
            port = udp.server_address[1]
            try:
                tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise RuntimeError("no free port for the test DNS server")
        udp.daemon_threads = tcp.daemon_threads = True
        self.port = port
        self._servers = [udp, tcp]
        for server in self._servers:
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            ).start()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- clients ---------------------------------------------------------------------------------

    def resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = 2
        return resolver

    def dkim_dnsfunc(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's ``dnsfunc``: the TXT record at ``name``, asked of this server over UDP."""
        try:
            answer = self.resolver().resolve(name.decode().rstrip("."), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return b""
        return b"".join(answer[0].strings)
