"""What kind of address an IP address is, for the URL guard (:mod:`morag_worker.urlguard`).

The tables are IANA's special-purpose address registries written out here instead of
``ipaddress``'s ``is_private``/``is_global``: those tables change between Python
releases (3.11.7 calls ``192.0.0.192``, ``fec0::1`` and the 6to4 form of 127.0.0.1
global), and a guard must not loosen with an interpreter upgrade.

IPv6 forms that carry an IPv4 address are judged by the IPv4 address they carry:
IPv4-mapped (``::ffff:0:0/96``), IPv4-translated (``::ffff:0:0:0/96``), NAT64
(``64:ff9b::/96``, and ``64:ff9b:1::/48`` read at both RFC 6052 positions) and 6to4
(``2002::/16``). Three forms are refused outright, whatever they carry
(:data:`NEVER_PRIVATE`): IPv4-compatible (``::/96``, deprecated since 2006; some stacks
still route it to the IPv4 address), Teredo (``2001::/32``: it embeds a relay and an
obfuscated client IPv4 and tunnels to either) and link-local (``169.254/16``,
``fe80::/10``: where cloud metadata services live, never a web server).
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Instance-metadata endpoints: AWS (IMDS, IPv6 IMDS, ECS task roles, EKS Pod Identity),
#: GCP (IPv6), Azure (IMDS is 169.254.169.254; the wireserver 168.63.129.16 hands out
#: agent certificates), Oracle Cloud (legacy 192.0.0.192), Alibaba. Most lie in refused
#: ranges anyway; listing them keeps them refused when ``allow_private`` is on or when
#: an allow-list range happens to cover one.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "168.63.129.16",
        "192.0.0.192",
        "100.100.100.200",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "fd20:ce::254",
    )
)
#: Classes that ``allow_private`` does not admit: only an allow-list entry does.
NEVER_PRIVATE = frozenset({"cloud metadata", "link-local", "IPv4-compatible", "Teredo"})

_V4 = [
    ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches the local host
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),  # retired 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # with 255.255.255.255, broadcast
]
_V6 = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible"),
    ("64:ff9b:1::/48", "private"),  # local-use NAT64: a site's own translator
    ("100::/64", "reserved"),  # discard-only
    ("2001::/32", "Teredo"),
    ("2001::/23", "reserved"),  # IETF protocol assignments
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "reserved"),  # SRv6 segment identifiers
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),  # site-local, deprecated but still routed by some stacks
    ("ff00::/8", "multicast"),
]
_TABLE = [(ipaddress.ip_network(net), name) for net, name in _V4 + _V6]
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_6TO4 = ipaddress.ip_network("2002::/16")
_COMPATIBLE = ipaddress.ip_network("::/96")
#: Forms judged by the IPv4 address they carry; the others keep their own class.
_CARRIERS = (_MAPPED, _TRANSLATED, _NAT64, _6TO4)


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 transition form carries (empty for other addresses).

    The local-use NAT64 prefix gives two candidates: the last 32 bits (a /96 prefix
    inside it) and the RFC 6052 /48 position (bits 48-63 and 72-87).
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return ()
    value = int(address)
    low = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address in _MAPPED or address in _TRANSLATED or address in _NAT64:
        return (low,)
    if address in _NAT64_LOCAL:
        at_48 = ((value >> 64) & 0xFFFF) << 16 | (value >> 40) & 0xFFFF
        return low, ipaddress.IPv4Address(at_48)
    if address in _6TO4:
        return (ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF),)
    if address in _COMPATIBLE and value > 1:  # not :: or ::1
        return (low,)
    return ()


def is_metadata(address: IPAddress) -> bool:
    """Whether ``address`` is a metadata endpoint, directly or inside a transition form."""
    return address in METADATA_ADDRESSES or any(
        v4 in METADATA_ADDRESSES for v4 in embedded_ipv4(address)
    )


def address_class(address: IPAddress) -> str | None:
    """Name the non-public class of ``address`` (``"loopback"`` …), or ``None`` if public.

    ``"cloud metadata"`` wins over every other class. A mapped, translated, NAT64 or
    6to4 address takes the class of the IPv4 address it carries.
    """
    if is_metadata(address):
        return "cloud metadata"
    if any(address in network for network in _CARRIERS):
        return address_class(embedded_ipv4(address)[0])
    for network, name in _TABLE:
        if address in network:  # False across IPv4/IPv6
            return name
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return "reserved"  # unallocated outside 2000::/3
    return None if address.is_global else "non-public"
