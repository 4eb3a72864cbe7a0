"""The URL guard shared by every task that fetches a URL (web pages, YouTube).

Server-side request forgery is the risk: a user submits a URL and the worker, sitting
inside a data centre, fetches it. The guard allows only ``http``/``https`` URLs whose
host resolves exclusively to public addresses (classes in :mod:`morag_worker.addresses`).
Loopback, private, shared, multicast, reserved and unspecified addresses are refused
unless ``allow_private`` is set (development and tests) or an allow-list entry covers
the host or address. Link-local, IPv4-compatible and Teredo addresses are refused even
with ``allow_private``, and cloud metadata endpoints (in any IPv6 form that carries
one) are admitted only by an allow-list entry naming that exact address: a laptop
never needs them and a cloud worker must never reach them.

Two entry points:

- :meth:`UrlGuard.check` validates a URL without fetching it, for a library that will
  fetch it itself (yt-dlp); it returns the resolved addresses.
- :func:`morag_worker.fetch.fetch` fetches through the guard, re-checking every redirect.

Every refusal is :class:`~morag_worker.errors.BadInput` naming the URL and the reason.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from morag_worker.addresses import (
    NEVER_PRIVATE,
    IPAddress,
    address_class,
    embedded_ipv4,
)
from morag_worker.errors import BadInput, TaskFailure

__all__ = ["CheckedUrl", "UrlGuard", "address_class", "check_url", "embedded_ipv4"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Host names that reach metadata services through the platform's own resolver (GCP,
#: AWS); whatever they resolve to, they are refused unless allow-listed by exact name.
METADATA_HOSTS: frozenset[str] = frozenset(
    {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
)

_HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_SCHEMES = {"http": 80, "https": 443}


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed the guard, with the addresses it resolved to (all allowed).

    ``fetch`` connects to ``addresses`` directly instead of resolving the host again,
    so a DNS answer that changes between the check and the connection (rebinding)
    cannot redirect it.
    """

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]
    parts: SplitResult


@dataclass(frozen=True)
class UrlGuard:
    """Which URLs a task may reach. Immutable; build one per task or share one.

    ``allow_hosts`` holds lower-case host names (``*.example.com`` matches subdomains);
    ``allow_networks`` holds address ranges. Either admits an address the default
    policy would refuse.
    """

    allow_private: bool = False
    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, allow_private: bool, allow_list: str | Iterable[str] = "") -> UrlGuard:
        """Build a guard from ``allow_private_urls`` and ``url_allow_list`` settings.

        ``allow_list`` is a comma-separated string (or an iterable) of host names,
        ``*.domain`` wildcards, addresses and CIDR ranges. A malformed entry is a
        configuration mistake and raises ``ValueError`` naming it.
        """
        entries = allow_list.split(",") if isinstance(allow_list, str) else list(allow_list)
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not _HOST_PATTERN.fullmatch(entry):
                    raise ValueError(
                        f"url allow-list entry {raw!r} is not a host or CIDR"
                    ) from None
                hosts.add(entry.rstrip("."))
        return cls(allow_private, frozenset(hosts), tuple(networks))

    def check(self, url: str) -> CheckedUrl:
        """Validate ``url`` and resolve its host; raise ``BadInput`` if it may not be fetched.

        Every address the host resolves to must be allowed: with several answers the
        system could pick any of them, so one private answer refuses the URL. A host
        that does not resolve is ``BadInput``; a temporary resolver failure is a
        retryable ``TaskFailure``.
        """
        parts, host, port = _parse(url)
        if host in METADATA_HOSTS and host not in self.allow_hosts:
            raise BadInput(f"URL {shown(url)} names a cloud metadata host; it is never fetched")
        addresses = _resolve(url, host, port)
        host_listed = self._host_listed(host)
        for address in addresses:
            reason = self._refusal(address, host_listed)
            if reason in NEVER_PRIVATE:
                raise BadInput(
                    f"URL {shown(url)} resolves to {address}, a {reason} address, which is "
                    "never fetched (an operator may name the exact address in "
                    "--url-allow-list)"
                )
            if reason:
                raise BadInput(
                    f"URL {shown(url)} resolves to {address}, a {reason} address; only public "
                    "addresses are fetched (allow-list it or enable --allow-private-urls "
                    "for development)"
                )
        return CheckedUrl(url, parts.scheme.lower(), host, port, addresses, parts)

    def _host_listed(self, host: str) -> bool:
        if host in self.allow_hosts:
            return True
        return any(p.startswith("*.") and host.endswith(p[1:]) for p in self.allow_hosts)

    def _refusal(self, address: IPAddress, host_listed: bool) -> str | None:
        """Why ``address`` is refused, or ``None`` when it may be reached.

        A metadata address is admitted only by an allow-list entry that is exactly that
        address: a range or a host name that happens to cover one (``100.64.0.0/10``
        holds Alibaba's) must not open it. Other classes are admitted by any allow-list
        entry that covers them, and the private ones by ``allow_private``.
        """
        reason = address_class(address)
        if reason is None:
            return None
        if reason == "cloud metadata":
            exact = any(net.num_addresses == 1 and address in net for net in self.allow_networks)
            return None if exact else reason
        if host_listed or any(address in net for net in self.allow_networks):
            return None
        if self.allow_private and reason not in NEVER_PRIVATE:
            return None
        return reason


def shown(url: str, limit: int = 200) -> str:
    """``url`` quoted for a message, cut to ``limit`` characters: error messages have a
    size limit of their own, and a 8 kB URL helps no reader."""
    if len(url) <= limit:
        return repr(url)
    return repr(url[:limit]) + f"… ({len(url):,} characters)"


def check_url(url: str, *, allow_private: bool = False, allow_list: str = "") -> CheckedUrl:
    """Shorthand for ``UrlGuard.from_settings(allow_private, allow_list).check(url)``."""
    return UrlGuard.from_settings(allow_private, allow_list).check(url)


def _parse(url: str) -> tuple[SplitResult, str, int]:
    if not isinstance(url, str) or not url.strip():
        raise BadInput("the URL is empty; give an http(s) URL")
    if any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in url):
        raise BadInput(f"URL {shown(url)} contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadInput(f"URL {shown(url)} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise BadInput(f"URL {shown(url)}: only http and https URLs are fetched, not {scheme!r}")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL invite parser confusion (http://trusted@evil/) and leak.
        raise BadInput(f"URL {shown(url)} embeds credentials; remove the user:password@ part")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise BadInput(f"URL {shown(url)} has no host")
    return parts, host, port or _SCHEMES[scheme]


def _resolve(url: str, host: str, port: int) -> tuple[IPAddress, ...]:
    """All addresses ``host`` resolves to, in the resolver's order, without duplicates."""
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:
        raise BadInput(f"URL {shown(url)}: host {host!r} is not a valid host name") from None
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise TaskFailure(
                "network", f"resolving {host!r} failed temporarily: {exc}", retryable=True
            ) from None
        raise BadInput(f"URL {shown(url)}: host {host!r} does not resolve ({exc})") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        # Strip an IPv6 zone ("fe80::1%eth0"): the address itself decides.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BadInput(f"URL {shown(url)}: host {host!r} has no addresses")
    return tuple(addresses)
