"""GETs a user's https URL under the same address policy as Java's core/net (AddressPolicy, SafeHttp).

Every host name is resolved and every address vetted before connecting, the connection goes to the vetted address
(so a second DNS answer cannot differ), and redirects are followed by hand: at most five, https only, each one
vetted again. By default only public unicast addresses: loopback, private (RFC 1918, CGNAT, benchmarking, IPv6
unique-local), link-local, multicast, reserved and unspecified addresses are refused, cloud metadata always.
TRELLIS2_ALLOW_LOOPBACK_URLS / TRELLIS2_ALLOW_PRIVATE_URLS ("true") open the first two, as on the Java side.
Written on http.client rather than urllib/requests because neither lets the caller vet the address it connects to.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

from trellis2_worker.errors import InputError

MAX_REDIRECTS = 5
_TIMEOUT_S = 60
# AWS/GCP/Azure 169.254.169.254, ECS task metadata 169.254.170.2, Alibaba 100.100.100.200, IMDS over IPv6.
_METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")}
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                               "198.18.0.0/15", "169.254.0.0/16", "fc00::/7", "fe80::/10",
                                               "fec0::/10")]
_RESERVED = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "240.0.0.0/4", "192.0.0.0/24")]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_v4(a: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """IPv4-mapped, IPv4-compatible and NAT64 addresses carry an IPv4 target."""
    if a.ipv4_mapped:
        return a.ipv4_mapped
    packed = a.packed
    if a in _NAT64 or (packed[:12] == bytes(12) and int(a) > 1):
        return ipaddress.IPv4Address(packed[12:])
    return None


@dataclass(frozen=True)
class AddressPolicy:
    allow_loopback: bool = False
    allow_private: bool = False

    @classmethod
    def from_environment(cls) -> "AddressPolicy":
        def on(name: str) -> bool:
            return os.environ.get(name, "").lower() == "true"

        return cls(on("TRELLIS2_ALLOW_LOOPBACK_URLS"), on("TRELLIS2_ALLOW_PRIVATE_URLS"))

    def refusal(self, address: str) -> str | None:
        """None when `address` may be reached, else why not (the Java AddressPolicy's words)."""
        a = ipaddress.ip_address(address.split("%")[0])
        if isinstance(a, ipaddress.IPv6Address):
            a = _embedded_v4(a) or a
        if a in _METADATA:
            return "it is a cloud metadata address"
        if a.is_loopback:
            return None if self.allow_loopback else "it is a loopback address"
        if a.is_unspecified or a.is_multicast or any(a in n for n in _RESERVED if n.version == a.version):
            return "it is not a public unicast address"
        if any(a in n for n in _PRIVATE if n.version == a.version):
            return None if self.allow_private else "it is a private or link-local address"
        return None


def _shown(parts: urllib.parse.SplitResult) -> str:
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class _VettedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the address already vetted, while TLS checks the certificate against the host name."""

    def __init__(self, host: str, port: int | None, address: str, context: ssl.SSLContext):
        super().__init__(host, port, timeout=_TIMEOUT_S, context=context)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class SafeHttp:
    def __init__(self, policy: AddressPolicy, context: ssl.SSLContext | None = None):
        self.policy = policy
        self.context = context or ssl.create_default_context()

    @classmethod
    def from_environment(cls) -> "SafeHttp":
        return cls(AddressPolicy.from_environment())

    def _vetted_address(self, host: str, port: int) -> str:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise InputError(f"data_url host '{host}' does not resolve") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for address in addresses:
            why = self.policy.refusal(address)
            if why:  # one bad answer refuses the host: a mixed answer is the classic rebinding setup
                raise InputError(f"data_url host '{host}' resolves to {address}: {why}, which the service does "
                                 "not fetch")
        return addresses[0]

    def get(self, url: str) -> http.client.HTTPResponse:
        """The response to GET `url` after at most five vetted https redirects; the caller closes it. Any status
        other than 200 is an InputError."""
        for hop in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            if parts.scheme.lower() != "https":
                raise InputError(f"data_url leads to {_shown(parts)}, which is not https")
            if not parts.hostname:
                raise InputError("data_url leads to a URL without a host")
            port = parts.port or 443
            conn = _VettedHTTPSConnection(parts.hostname, port, self._vetted_address(parts.hostname, port),
                                          self.context)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            try:
                conn.request("GET", path, headers={"User-Agent": "trellis2-worker", "Accept-Encoding": "identity"})
                response = conn.getresponse()
            except ssl.SSLError as exc:
                conn.close()
                raise InputError(f"data_url {_shown(parts)}: TLS failed ({exc.reason})") from None
            except OSError:
                conn.close()
                raise InputError(f"data_url {_shown(parts)} cannot be reached") from None
            location = response.getheader("Location")
            if 300 <= response.status < 400 and location:
                response.close()
                conn.close()
                url = urllib.parse.urljoin(url, location)
                continue
            if response.status != 200:
                response.close()
                conn.close()
                raise InputError(f"cannot download {_shown(parts)}: HTTP {response.status}")
            return response
        raise InputError(f"data_url redirects more than {MAX_REDIRECTS} times")
