"""SSRF protection: which webhook URLs and addresses exportd may call.

`AddressGuard.resolve` resolves a host once and checks every address it gets; the HTTP
sender connects only to those checked addresses (see `delivery.http`), so a DNS answer
that changes between the check and the connection (rebinding) cannot slip through.
Forbidden, unless `allow_private`: loopback, private (RFC 1918, ULA), link-local, CGNAT
(100.64/10), multicast, unspecified, reserved and other non-global ranges, the cloud
metadata addresses, and IPv6 forms that embed such an IPv4 address (IPv4-mapped,
IPv4-compatible, NAT64, 6to4)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from exportd.errors import TargetRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""`(host, port)` to the addresses (text) a connection may use, in preference order."""

METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SCHEMES = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2000


def system_resolver(host: str, port: int) -> list[str]:
    """The system resolver's answer (`getaddrinfo`), duplicates removed, order kept."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(
            "webhook_url_unresolvable", f"{host} does not resolve: {exc}", retryable=True
        ) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, IPv4-compatible
        return ipaddress.IPv4Address(int(address))
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why exportd may not connect to `address` (None: it may)."""
    if address in METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = forbidden_reason(inner)
            return None if reason is None else f"an IPv6 form of {inner}, {reason}"
    for test, reason in (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in CGNAT, "a CGNAT address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    ):
        if test:
            return reason
    return None


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart: what to connect to and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int


def parse_url(url: str) -> Target:
    """Check a webhook URL's form (http or https, a host, no credentials)."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused("invalid_webhook_url", f"the URL is longer than {MAX_URL_LENGTH}")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("invalid_webhook_url", f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise TargetRefused("invalid_webhook_url", "webhook URLs must be http:// or https://")
    if not parts.hostname:
        raise TargetRefused("invalid_webhook_url", "the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("invalid_webhook_url", "credentials in the URL are not supported")
    if any(ch.isspace() for ch in url):
        raise TargetRefused("invalid_webhook_url", "the URL contains white space")
    return Target(url, scheme, parts.hostname, port or SCHEMES[scheme])


@dataclass
class AddressGuard:
    """Resolves hosts and refuses forbidden addresses (all allowed with `allow_private`,
    for on-premises receivers and tests). `resolver` is the seam tests use to play DNS."""

    allow_private: bool = False
    resolver: Resolver = field(default=system_resolver)

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of `host`, each checked; raises `TargetRefused` if any address is
        forbidden (a mixed answer is refused whole) or there is none."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        found = [str(literal)] if literal is not None else self.resolver(host, port)
        if not found:
            raise TargetRefused(
                "webhook_url_unresolvable", f"{host} has no address", retryable=True
            )
        if not self.allow_private:
            for text in found:
                reason = forbidden_reason(ipaddress.ip_address(text.split("%", 1)[0]))
                if reason is not None:
                    raise TargetRefused(
                        "webhook_url_forbidden", f"{host} resolves to {text}, {reason}"
                    )
        return found

    def check(self, url: str) -> Target:
        """What creating a webhook checks: the URL's form and, unless private addresses
        are allowed, that its host resolves to public addresses only."""
        target = parse_url(url)
        if not self.allow_private:
            try:
                self.resolve(target.host, target.port)
            except TargetRefused as exc:
                raise TargetRefused(exc.code, exc.message) from None
        return target
