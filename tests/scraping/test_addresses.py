"""The gate's address rule: every answer a name resolves to is classified, wrapped forms unwrapped."""

import pytest

from scraping.addresses import ForbiddenNetworks, allowed_networks, refusal

REFUSED = {
    # Cloud metadata services, whatever form the address takes.
    "169.254.169.254": "link-local, where cloud metadata services answer",
    "169.254.170.2": "link-local, where cloud metadata services answer",
    "100.100.100.200": "Alibaba Cloud metadata service",
    "192.0.0.192": "Oracle Cloud metadata service",
    "fd00:ec2::254": "AWS metadata service over IPv6",
    "168.63.129.16": "Azure WireServer",
    "::ffff:0:7f00:1": "carries 127.0.0.1",  # IPv4-translated (SIIT)
    "::ffff:169.254.169.254": "carries 169.254.169.254",
    "::ffff:a9fe:a9fe": "carries 169.254.169.254",
    "64:ff9b::a9fe:a9fe": "carries 169.254.169.254",
    "2002:a9fe:a9fe::1": "carries 169.254.169.254",
    # Loopback and the private networks, in IPv4, IPv6 and the forms that carry IPv4.
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "::1": "IPv6 loopback",
    "::ffff:127.0.0.1": "carries 127.0.0.1",
    "::127.0.0.1": "carries 127.0.0.1",
    "10.0.0.1": "private network (RFC 1918)",
    "172.16.0.1": "private network (RFC 1918)",
    "172.31.255.255": "private network (RFC 1918)",
    "192.168.1.1": "private network (RFC 1918)",
    "fc00::1": "unique local addresses",
    "fd12::1": "unique local addresses",
    "fe80::1": "IPv6 link-local",
    "fec0::1": "deprecated site-local",
    # What Python's is_private misses or calls global.
    "100.64.0.1": "shared address space",
    "192.0.0.8": "IETF protocol assignments",
    "198.18.0.1": "benchmarking",
    # The rest of the registries, multicast and broadcast.
    "0.0.0.0": "'this network'",
    "0.1.2.3": "'this network'",
    "192.0.2.10": "TEST-NET-1",
    "198.51.100.7": "TEST-NET-2",
    "203.0.113.9": "TEST-NET-3",
    "192.88.99.1": "6to4 relay anycast",
    "224.0.0.251": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "limited broadcast",
    "::": "unspecified",
    "::8.8.8.8": "deprecated IPv4-compatible",
    "64:ff9b:1::a00:1": "local-use IPv4/IPv6 translation",
    "100::1": "discard-only",
    "2001:db8::1": "IPv6 documentation",
    "3fff::1": "IPv6 documentation",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "carries 192.0.2.45",  # Teredo to TEST-NET-1
    "2001:0:808:808:0:0:f7f7:f7f7": "IETF protocol assignments",  # Teredo between public addresses
    "5f00::1": "segment routing",
    "ff02::1": "IPv6 multicast",
}

ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8",
           "64:ff9b::808:808", "2002:808:808::1", "100.63.255.255", "100.128.0.0", "172.32.0.1"]


@pytest.mark.parametrize(("address", "named"), sorted(REFUSED.items()))
def test_a_special_purpose_address_is_refused_naming_its_rule(address, named):
    why = refusal(address)
    assert why is not None and named in why


@pytest.mark.parametrize("address", ALLOWED)
def test_a_public_address_is_allowed_in_every_form(address):
    assert refusal(address) is None


def test_the_allow_list_opens_loopback_for_the_tests_and_nothing_more():
    allowed = allowed_networks(["127.0.0.0/8", "::1/128"])
    assert refusal("127.0.0.1", allowed=allowed) is None
    assert refusal("::ffff:127.0.0.1", allowed=allowed) is None
    assert refusal("::1", allowed=allowed) is None
    assert "private network" in refusal("10.0.0.1", allowed=allowed)
    assert "metadata" in refusal("169.254.169.254", allowed=allowed)


@pytest.mark.parametrize("entry", ["169.254.169.254/32", "169.254.0.0/16", "0.0.0.0/0", "100.100.0.0/16",
                                   "192.0.0.0/24", "fd00:ec2::/64", "::/0", "fe80::/64"])
def test_the_allow_list_can_never_open_a_metadata_address(entry):
    with pytest.raises(ForbiddenNetworks, match="can never be allowed"):
        allowed_networks([entry])


def test_an_allow_list_entry_that_is_not_a_network_is_refused_by_name():
    with pytest.raises(ForbiddenNetworks, match="'loopback' is not a network"):
        allowed_networks(["loopback"])
