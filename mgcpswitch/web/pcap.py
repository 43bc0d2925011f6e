# -*- test-case-name: tests.test_web_flow -*-
"""
Datagrams as a classic pcap file that Wireshark and tshark open: one
record per datagram, an IPv4 or IPv6 header and a UDP header (checksums
computed) around the payload, with the datagram's time to the microsecond.
Link type C{LINKTYPE_RAW} (101): the packet starts at the IP header.

Pure: bytes out, no I/O.  When one side of a datagram is IPv6 and the
other IPv4, the IPv4 one is written v4-mapped (C{::ffff:a.b.c.d}).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Iterable

from .flow import Datagram

__all__ = ["CONTENT_TYPE", "LINKTYPE_RAW", "pcap"]

CONTENT_TYPE = b"application/vnd.tcpdump.pcap"
LINKTYPE_RAW = 101
MAGIC = 0xA1B2C3D4  # microsecond timestamps
SNAPLEN = 65535
UDP = 17
TTL = 64


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _addresses(source: str, destination: str) -> tuple[IP, IP]:
    a: IP = ipaddress.ip_address(source.partition("%")[0])
    b: IP = ipaddress.ip_address(destination.partition("%")[0])
    if a.version != b.version:
        a, b = (ipaddress.IPv6Address(f"::ffff:{x}") if x.version == 4 else x for x in (a, b))
    return a, b


def _packet(datagram: Datagram, ident: int) -> bytes:
    (source, sport), (destination, dport) = datagram.source, datagram.destination
    src, dst = _addresses(source, destination)
    length = 8 + len(datagram.payload)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, UDP, length)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", length, UDP)
    udp_sum = _checksum(pseudo + struct.pack("!HHHH", sport, dport, length, 0) + datagram.payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, udp_sum) + datagram.payload
    if src.version == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, ident & 0xFFFF, 0x4000, TTL, UDP, 0,
                             src.packed, dst.packed)
        return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + udp
    return struct.pack("!IHBB16s16s", 6 << 28, length, UDP, TTL, src.packed, dst.packed) + udp


def pcap(datagrams: Iterable[Datagram]) -> bytes:
    """The pcap file of C{datagrams}, in order."""
    out = [struct.pack("<IHHiIII", MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW)]
    for number, datagram in enumerate(datagrams, 1):
        packet = _packet(datagram, number)
        seconds = int(datagram.time)
        micros = min(999_999, int(round((datagram.time - seconds) * 1_000_000)))
        out.append(struct.pack("<IIII", seconds, micros, len(packet), len(packet)))
        out.append(packet)
    return b"".join(out)
