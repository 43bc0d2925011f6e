#!/usr/bin/env python3
"""
Microbenchmark of the simulated gateway's media path: the cost of one RTP
packet received on a connection (C{Connection.rtp_received}: count it, look
the endpoint's mixing up, count whom the handset heard, forward).

    PYTHONPATH=. python benchmarks/bench_media.py [--packets N] [--runs R]

Cases: a connection alone on its endpoint (the usual two-party call, the
mixing looked up by mode), one of two C{confrnce} connections (a three-way
call: the mixing memoised by the endpoint's modes, each packet forwarded
out of the other connection; no socket, so the forward stops at the write),
and one of two C{sendrecv} (a held call beside a talking one).  Baseline
measured in the same run: a bare parse of the same packet (the RTP header
fields a connection reads, with C{struct}) in the same loop; the ratios to
it are printed.  Best of R runs of N packets.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_info, print_machine  # noqa: E402

from mgcpswitch.gateway.connection import Connection  # noqa: E402
from mgcpswitch.mgcp import ConnectionMode  # noqa: E402

PACKET = struct.pack("!BBHII", 0x80, 0, 1, 0, 7) + b"\xff" * 160


def endpoint(*modes: ConnectionMode) -> Connection:
    """An endpoint's connections with these modes; the first one."""
    siblings: dict[str, Connection] = {}
    for i, mode in enumerate(modes):
        cid = f"{i + 1:X}"
        siblings[cid] = Connection(cid, "C1", mode, siblings, source=1)
    return next(iter(siblings.values()))


def bare(datagram: bytes, addr: object) -> None:
    if len(datagram) < 12 or datagram[0] >> 6 != 2:
        return
    struct.unpack_from("!H", datagram, 2)
    struct.unpack_from("!I", datagram, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print_machine(machine_info(sys.argv))
    cases = {
        "bare RTP header parse (baseline)": bare,
        "sendrecv, alone on its endpoint": endpoint(ConnectionMode.SENDRECV).rtp_received,
        "confrnce, beside another confrnce": endpoint(ConnectionMode.CONFRNCE, ConnectionMode.CONFRNCE).rtp_received,
        "sendrecv, beside an inactive one": endpoint(ConnectionMode.SENDRECV, ConnectionMode.INACTIVE).rtp_received,
    }
    best = {name: float("inf") for name in cases}
    for _ in range(args.runs):  # interleaved, so that other load falls on every case alike
        for name, receive in cases.items():
            seconds = timeit.timeit(lambda: receive(PACKET, None), number=args.packets)
            best[name] = min(best[name], seconds / args.packets)
    baseline = best["bare RTP header parse (baseline)"]
    print(f"# best of {args.runs} runs of {args.packets} packets")
    for name, seconds in best.items():
        print(f"{name:40s} {seconds * 1e6:6.2f} us/packet  {seconds / baseline:5.2f}x baseline")


if __name__ == "__main__":
    main()
