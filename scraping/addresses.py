"""Which network addresses an outbound request may connect to: the address rule of the gate.

Every answer a name resolves to is classified here, after resolution and never from the URL's
text (glibc's resolver turns `0x7f.1` and `2130706433` into 127.0.0.1). The table is IANA's
IPv4 and IPv6 special-purpose address registries plus what they leave out but an attacker
aims at: multicast, the cloud metadata addresses, the deprecated site-local range. Python's
`is_private` and `is_global` are not used: they miss 100.64.0.0/10 (shared address space, where
Alibaba's metadata service lives), call 192.0.0.192 (Oracle's) and 6to4 global, and change
between Python releases.

Addresses that carry an IPv4 address inside an IPv6 one (IPv4-mapped, IPv4-compatible,
IPv4-translated, NAT64, 6to4, Teredo) are unwrapped and the IPv4 addresses they carry are classified too: the packets
end up there.

The only escape hatch is an explicit list of allowed networks (a setting; the tests allow
loopback with it). It can never allow a metadata address or the link-local range they sit in.
"""

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


@dataclass(frozen=True)
class Block:
    network: IPNetwork
    rule: str  # what a refusal says: the range's name and where it is defined


def _blocks(rows: list[tuple[str, str]]) -> tuple[Block, ...]:
    return tuple(Block(ip_network(network), rule) for network, rule in rows)


# Never reachable, whatever the allow-list says: the cloud instance metadata services, and the
# link-local range that holds most of them.
METADATA = _blocks([
    ("169.254.0.0/16", "link-local, where cloud metadata services answer (RFC 3927)"),
    ("100.100.100.200/32", "Alibaba Cloud metadata service"),
    ("192.0.0.192/32", "Oracle Cloud metadata service"),
    ("fd00:ec2::254/128", "AWS metadata service over IPv6"),
    ("168.63.129.16/32", "Azure WireServer, the host agent every Azure VM reaches"),
    ("fe80::/10", "IPv6 link-local (RFC 4291)"),
])

# IANA IPv4 and IPv6 special-purpose address registries (as of 2026), plus multicast and the
# deprecated site-local range, which the registries list elsewhere.
SPECIAL_PURPOSE = _blocks([
    ("0.0.0.0/8", "'this network' (RFC 791)"),
    ("10.0.0.0/8", "private network (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("172.16.0.0/12", "private network (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"),
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "AMT (RFC 7450)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private network (RFC 1918)"),
    ("192.175.48.0/24", "direct delegation AS112 service (RFC 7534)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    ("::/128", "IPv6 unspecified address (RFC 4291)"),
    ("::1/128", "IPv6 loopback (RFC 4291)"),
    ("::/96", "deprecated IPv4-compatible IPv6 address (RFC 4291)"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001:db8::/32", "IPv6 documentation (RFC 3849)"),
    ("3fff::/20", "IPv6 documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique local addresses, IPv6's private networks (RFC 4193)"),
    ("fec0::/10", "deprecated site-local (RFC 3879)"),
    ("ff00::/8", "IPv6 multicast (RFC 4291)"),
])

# IPv6 forms that carry an IPv4 address the packets go to. Their carried addresses are
# classified first (a refusal names both); then the IPv6 address itself, so that Teredo
# (inside 2001::/23) and the deprecated IPv4-compatible form stay refused either way.
NAT64 = ip_network("64:ff9b::/96")
IPV4_TRANSLATED = ip_network("::ffff:0:0:0/96")  # SIIT (RFC 6145)
IPV4_COMPATIBLE = ip_network("::/96")


class ForbiddenNetworks(ValueError):
    """An allow-list entry that would open what may never be opened."""


def allowed_networks(entries: list[str]) -> tuple[IPNetwork, ...]:
    """The allow-list setting parsed; raises ForbiddenNetworks for what it can never allow."""
    networks = []
    for entry in entries:
        try:
            network = ip_network(entry.strip(), strict=False)
        except ValueError:
            raise ForbiddenNetworks(f"{entry!r} is not a network (write it as 127.0.0.0/8 or ::1/128)") from None
        overlapping = [block for block in METADATA if block.network.version == network.version
                       and block.network.overlaps(network)]
        if overlapping:
            raise ForbiddenNetworks(f"{entry} would allow {overlapping[0].network}: {overlapping[0].rule}; "
                                    "metadata addresses can never be allowed")
        networks.append(network)
    return tuple(networks)


def carried_ipv4(address: IPv6Address) -> list[IPv4Address]:
    """The IPv4 addresses an IPv6 address carries to (mapped, compatible, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.teredo is not None:
        return list(address.teredo)
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address in NAT64 or address in IPV4_TRANSLATED or (address in IPV4_COMPATIBLE and int(address) > 1):
        return [IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def refusal(address: IPAddress | str, *, allowed: tuple[IPNetwork, ...] = ()) -> str | None:
    """Why `address` may not be connected to, naming the rule; None when it may."""
    address = ip_address(address)
    block = _most_specific(address, METADATA)
    if block:
        return f"{address} is in {block.network}: {block.rule}"
    if address.version == 6:
        for carried in carried_ipv4(address):
            why = refusal(carried, allowed=allowed)
            if why:
                return f"{address} carries {carried}: {why}"
        if address.ipv4_mapped is not None:
            return None  # the IPv4 address itself, classified just above
    if any(address in network for network in allowed):
        return None
    block = _most_specific(address, SPECIAL_PURPOSE)
    return f"{address} is in {block.network}: {block.rule}" if block else None


def _most_specific(address: IPAddress, blocks: tuple[Block, ...]) -> Block | None:
    """The longest-prefix match: 192.0.0.192 is named Oracle's, not only IETF's."""
    matches = [block for block in blocks if address in block.network]
    return max(matches, key=lambda block: block.network.prefixlen, default=None)
