#!/usr/bin/env python3
"""
Microbenchmark of the MGCP codec (mgcpswitch.mgcp.decode / encode).

    PYTHONPATH=. python benchmarks/bench_codec.py [--json] [--iterations N]
                                                 [--runs R] [--pool P] [--no-gc]

Four kinds of datagram: a CRCX with SDP, a 200 with SDP, an NTFY with
observed digits, and a piggybacked 200 + RQNT.  For each: microseconds per
datagram for decode, for encode (of the decoded value) and for decode+encode,
measured two ways, because the codec caches:

  - the decoder interns recurring parameter values by their text
    (C{_interned} in mgcp/_params.py: L:, M:, N:, R:, S:, D:, O:, endpoint
    names...), so a recurring C{L: p:20, a:PCMU} is parsed once;
  - the encoder memoises the formatted text of a value by identity
    (C{_format_slow} in mgcp/_codec.py), so an interned value is formatted
    once.

  (a) "steady traffic": a pool of P distinct messages per kind that differ in
      what really differs per call (transaction id, call id, connection id,
      request id, endpoint, SDP session id / address / port; dialled digits
      drawn from ~100 numbers).  Every decode gets a fresh bytes object (a
      copy made outside the timed block, as a datagram arrives in fresh
      memory); encode times the values those decodes returned.
  (b) "same message repeated": one bytes object decoded N times, one value
      encoded N times: the best case for every cache.

Each figure is N datagrams per run (default 200,000), R runs (default 5);
the best and the median run are printed.  The timed blocks include the
Python for-loop (its cost is printed separately).  The garbage collector is
left on during timing, as in a running server (a full collection runs before
each timed block), unless --no-gc is given, which the output then says.

A baseline measured in the same run: a bare split-lines parser (bytes -> str,
split lines, split the first line, partition each parameter line into a dict,
split off the SDP lines; no typing, no validation) and a bare encoder (join
lines), on the CRCX with SDP; the ratio typed/bare is printed.

Runs on CPython and on PyPy when the codec imports there (it needs Python
>= 3.11; when it does not import, the baseline is still measured, the reason
is printed and the exit status is 2).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
import traceback

from _common import cpu_model, git_revision, machine_busy_ticks  # the benchmarks' shared helpers (stdlib only)


try:
    from mgcpswitch.mgcp import decode, encode
except Exception:  # e.g. an interpreter older than the codec needs
    decode = encode = None  # type: ignore[assignment]
    CODEC_ERROR = traceback.format_exc(limit=-3).strip()
else:
    CODEC_ERROR = None

KINDS = ("crcx_sdp", "ok_sdp", "ntfy_digits", "piggyback_200_rqnt")
KIND_TITLES = {
    "crcx_sdp": "CRCX with SDP",
    "ok_sdp": "200 with SDP",
    "ntfy_digits": "NTFY with observed digits",
    "piggyback_200_rqnt": "piggybacked 200 + RQNT",
}
OPS = ("decode", "encode", "decode+encode")


# ---------------------------------------------------------------------------
# The messages, as wire text in the codec's canonical form (CRLF, one space
# after the colon, parameters in the encoder's order), so that
# encode(decode(b)) == b can be checked before timing.


def crcx_sdp(rng: random.Random, i: int) -> bytes:
    txid = 100000 + i
    line = rng.randrange(1, 49)
    gw = rng.randrange(1, 9)
    call_id = "%016X" % rng.getrandbits(64)
    session = rng.randrange(10**9, 10**10)
    address = "10.%d.%d.%d" % (gw, rng.randrange(256), rng.randrange(1, 255))
    port = rng.randrange(16384, 32768, 2)
    return (
        "CRCX %d aaln/%d@gw%d.example.net MGCP 1.0\r\n"
        "C: %s\r\n"
        "N: ca@ca1.example.net:2727\r\n"
        "L: p:20, a:PCMU;PCMA\r\n"
        "M: recvonly\r\n"
        "\r\n"
        "v=0\r\n"
        "o=- %d %d IN IP4 %s\r\n"
        "s=-\r\n"
        "c=IN IP4 %s\r\n"
        "t=0 0\r\n"
        "m=audio %d RTP/AVP 0 8 101\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        % (txid, line, gw, call_id, session, session, address, address, port)
    ).encode()


def ok_sdp(rng: random.Random, i: int) -> bytes:
    txid = 200000 + i
    conn_id = "%08X" % rng.getrandbits(32)
    session = rng.randrange(10**9, 10**10)
    address = "10.%d.%d.%d" % (rng.randrange(1, 9), rng.randrange(256), rng.randrange(1, 255))
    port = rng.randrange(16384, 32768, 2)
    return (
        "200 %d OK\r\n"
        "I: %s\r\n"
        "\r\n"
        "v=0\r\n"
        "o=- %d %d IN IP4 %s\r\n"
        "s=-\r\n"
        "c=IN IP4 %s\r\n"
        "t=0 0\r\n"
        "m=audio %d RTP/AVP 0\r\n"
        "a=ptime:20\r\n"
        % (txid, conn_id, session, session, address, address, port)
    ).encode()


def _numbers(rng: random.Random) -> list[str]:
    """~100 dialled numbers: local 7-digit, national 10-digit, a few short codes."""
    numbers = ["%07d" % rng.randrange(2000000, 9999999) for _ in range(60)]
    numbers += ["1%010d" % rng.randrange(2000000000, 9999999999) for _ in range(35)]
    numbers += ["911", "411", "611", "*69", "0"]
    return numbers


def ntfy_digits(rng: random.Random, i: int, numbers: list[str]) -> bytes:
    txid = 300000 + i
    number = numbers[rng.randrange(len(numbers))]
    events = ", ".join("D/%s" % d for d in number)
    return (
        "NTFY %d aaln/%d@gw%d.example.net MGCP 1.0\r\n"
        "N: ca@ca1.example.net:2727\r\n"
        "X: %X\r\n"
        "O: L/hd, %s\r\n"
        % (txid, rng.randrange(1, 49), rng.randrange(1, 9), rng.getrandbits(40), events)
    ).encode()


def piggyback_200_rqnt(rng: random.Random, i: int) -> bytes:
    return (
        "200 %d OK\r\n"
        ".\r\n"
        "RQNT %d aaln/%d@gw%d.example.net MGCP 1.0\r\n"
        "X: %X\r\n"
        "R: L/hu(N), D/[0-9#*T](D)\r\n"
        "S: L/dl\r\n"
        "D: (0T|00T|[2-9]xxxxxx|1[2-9]xxxxxxxxx|011x.T|911|[2-9]11|*xx)\r\n"
        % (400000 + i, 500000 + i, rng.randrange(1, 49), rng.randrange(1, 9),
           rng.getrandbits(40))
    ).encode()


def make_pools(size: int, seed: int = 3435) -> dict[str, list[bytes]]:
    rng = random.Random(seed)
    numbers = _numbers(rng)
    return {
        "crcx_sdp": [crcx_sdp(rng, i) for i in range(size)],
        "ok_sdp": [ok_sdp(rng, i) for i in range(size)],
        "ntfy_digits": [ntfy_digits(rng, i, numbers) for i in range(size)],
        "piggyback_200_rqnt": [piggyback_200_rqnt(rng, i) for i in range(size)],
    }


# ---------------------------------------------------------------------------
# The baseline: no typing, no validation.


def bare_decode(data: bytes) -> tuple[list[str], dict[str, str], list[str]]:
    text = data.decode("utf-8")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    first = lines[0].split(" ")
    params = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        params[name] = value.strip()
    sdp = body.split("\r\n") if body else []
    if sdp and sdp[-1] == "":
        sdp.pop()
    return first, params, sdp


def bare_encode(message: tuple[list[str], dict[str, str], list[str]]) -> bytes:
    first, params, sdp = message
    out = [" ".join(first)]
    for name, value in params.items():
        out.append(name + ": " + value)
    text = "\r\n".join(out) + "\r\n"
    if sdp:
        text += "\r\n" + "\r\n".join(sdp) + "\r\n"
    return text.encode("utf-8")


# ---------------------------------------------------------------------------
# Timing.


def _loop_decode(fn):  # type: ignore[no-untyped-def]
    def run(items):  # type: ignore[no-untyped-def]
        for b in items:
            fn(b)
    return run


def _loop_encode(fn):  # type: ignore[no-untyped-def]
    def run(items):  # type: ignore[no-untyped-def]
        for v in items:
            fn(v)
    return run


def _loop_roundtrip(dec, enc, single):  # type: ignore[no-untyped-def]
    if single:
        def run(items):  # type: ignore[no-untyped-def]
            for b in items:
                enc(dec(b)[0])
    else:
        def run(items):  # type: ignore[no-untyped-def]
            for b in items:
                enc(dec(b))
    return run


def _loop_bare_roundtrip(items):  # type: ignore[no-untyped-def]
    for b in items:
        bare_encode(bare_decode(b))


def _empty_loop(items):  # type: ignore[no-untyped-def]
    for _ in items:
        pass


class Timer:
    def __init__(self, runs: int, no_gc: bool) -> None:
        self.runs = runs
        self.no_gc = no_gc

    def measure(self, run, make_items):  # type: ignore[no-untyped-def]
        """Microseconds per item of each run; items are made outside the timed block."""
        per_item = []
        for _ in range(self.runs):
            items = make_items()
            gc.collect()
            if self.no_gc:
                gc.disable()
            try:
                t0 = time.perf_counter_ns()
                run(items)
                t1 = time.perf_counter_ns()
            finally:
                if self.no_gc:
                    gc.enable()
            per_item.append((t1 - t0) / len(items) / 1000.0)
            del items
        return per_item


def fresh_copies(pool: list[bytes], n: int) -> list[bytes]:
    """n new bytes objects cycling through the pool (bytes(b) would return b itself)."""
    return [bytes(bytearray(pool[i % len(pool)])) for i in range(n)]


def figure(kind: str, mode: str, op: str, runs_us: list[float], n: int) -> dict:
    return {
        "kind": kind, "mode": mode, "op": op, "iterations": n,
        "best_us": min(runs_us), "median_us": statistics.median(runs_us),
        "runs_us": [round(x, 4) for x in runs_us],
    }


def bench_codec(pools: dict[str, list[bytes]], n: int, timer: Timer, log) -> list[dict]:  # type: ignore[no-untyped-def]
    results = []
    for kind in KINDS:
        pool = pools[kind]
        single = kind != "piggyback_200_rqnt"
        for b in pool:  # the pool is canonical: decode/encode really round-trips
            values = decode(b)
            assert all(type(v).__name__ in ("Command", "Response") for v in values), (b, values)
            again = encode(values[0] if single else values)
            assert again == b, (b, again)
        pick = (lambda vs: vs[0]) if single else (lambda vs: vs)

        # (a) steady traffic.  The values to encode are decoded once from n
        # fresh copies and reused by the runs: what differs per call (C:, I:,
        # X:, SDP) takes the encoder's fast paths or str(), never the identity
        # memo, and the memo (8192 entries, then cleared) has long forgotten
        # a value by the time it comes round again n datagrams later.
        steady_values = [pick(decode(b)) for b in fresh_copies(pool, n)]
        for op, run, make in (
            ("decode", _loop_decode(decode), lambda: fresh_copies(pool, n)),
            ("encode", _loop_encode(encode), lambda: steady_values),
            ("decode+encode", _loop_roundtrip(decode, encode, single), lambda: fresh_copies(pool, n)),
        ):
            results.append(figure(kind, "steady", op, timer.measure(run, make), n))
            log(results[-1])
        del steady_values

        # (b) the same message repeated
        one = pool[0]
        value = pick(decode(one))
        for op, run, make in (
            ("decode", _loop_decode(decode), lambda: [one] * n),
            ("encode", _loop_encode(encode), lambda: [value] * n),
            ("decode+encode", _loop_roundtrip(decode, encode, single), lambda: [one] * n),
        ):
            results.append(figure(kind, "same", op, timer.measure(run, make), n))
            log(results[-1])
    return results


def bench_baseline(pools: dict[str, list[bytes]], n: int, timer: Timer, log) -> list[dict]:  # type: ignore[no-untyped-def]
    pool = pools["crcx_sdp"]
    for b in pool:
        assert bare_encode(bare_decode(b)) == b, b
    results = []
    steady_values = [bare_decode(b) for b in fresh_copies(pool, n)]
    one = pool[0]
    value = bare_decode(one)
    for mode, decode_items, encode_items in (
        ("steady", lambda: fresh_copies(pool, n), lambda: steady_values),
        ("same", lambda: [one] * n, lambda: [value] * n),
    ):
        for op, run, make in (
            ("decode", _loop_decode(bare_decode), decode_items),
            ("encode", _loop_encode(bare_encode), encode_items),
            ("decode+encode", _loop_bare_roundtrip, decode_items),
        ):
            results.append(figure("crcx_sdp", mode, op, timer.measure(run, make), n))
            log(results[-1])
    return results


# ---------------------------------------------------------------------------
# The machine.


def machine() -> dict:
    return {
        "python": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "codec_revision": git_revision(),
    }


# ---------------------------------------------------------------------------
# Output.


def _row(r: dict) -> str:
    return "  %-26s %-7s %-14s best %8.3f us   median %8.3f us" % (
        KIND_TITLES[r["kind"]], r["mode"], r["op"], r["best_us"], r["median_us"])


def print_table(title: str, results: list[dict]) -> None:
    print(title)
    print("  %-26s %-7s %-14s %s" % ("datagram", "mode", "operation", "per datagram (best / median of runs)"))
    last = None
    for r in results:
        if last is not None and (r["kind"], r["mode"]) != last:
            print()
        last = (r["kind"], r["mode"])
        print(_row(r))
    print()


def ratios(codec: list[dict], baseline: list[dict]) -> list[dict]:
    out = []
    for b in baseline:
        for c in codec:
            if (c["kind"], c["mode"], c["op"]) == (b["kind"], b["mode"], b["op"]):
                out.append({
                    "kind": b["kind"], "mode": b["mode"], "op": b["op"],
                    "typed_best_us": c["best_us"], "bare_best_us": b["best_us"],
                    "ratio_best": c["best_us"] / b["best_us"],
                    "ratio_median": c["median_us"] / b["median_us"],
                })
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--iterations", type=int, default=200_000, help="datagrams per run (default 200000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (default 5)")
    parser.add_argument("--pool", type=int, default=1000, help="distinct messages per kind (default 1000)")
    parser.add_argument("--no-gc", action="store_true", help="disable the garbage collector inside timed blocks")
    args = parser.parse_args()
    n, timer = args.iterations, Timer(args.runs, args.no_gc)

    info = machine()
    settings = {
        "iterations_per_run": n, "runs": args.runs, "pool_size": args.pool,
        "gc_during_timing": "disabled" if args.no_gc else "enabled (gc.collect() before each timed block)",
        "timer": "time.perf_counter_ns", "figure": "microseconds per datagram; best and median of the runs",
    }
    if not args.json:
        print("MGCP codec benchmark (benchmarks/bench_codec.py)")
        print("  python         %s" % info["python"])
        print("  implementation %s (%s)" % (info["implementation"], info["executable"]))
        print("  platform       %s, %s" % (info["platform"], info["machine"]))
        print("  cpu            %s, cpu_count=%s" % (info["cpu"], info["cpu_count"]))
        print("  load average   %s at start" % (info["loadavg_at_start"],))
        print("  codec          git %s" % info["codec_revision"])
        print("  settings       %d datagrams per run, best/median of %d runs, pool of %d distinct messages per kind"
              % (n, args.runs, args.pool))
        print("  gc             %s" % settings["gc_during_timing"])
        print("  loop overhead  included in every figure (empty loop below)")
        if CODEC_ERROR:
            print()
            print("CODEC NOT MEASURED: mgcpswitch.mgcp does not import on this interpreter:")
            print("  " + CODEC_ERROR.replace("\n", "\n  "))
        print()
        sys.stdout.flush()

    pools = make_pools(args.pool)
    busy0, cpu0, wall0 = machine_busy_ticks(), os.times(), time.monotonic()
    log = (lambda r: print("  measured " + _row(r).strip(), file=sys.stderr, flush=True))

    empty = timer.measure(_empty_loop, lambda: fresh_copies(pools["crcx_sdp"], n))
    codec = [] if CODEC_ERROR else bench_codec(pools, n, timer, log)
    baseline = bench_baseline(pools, n, timer, log)

    busy1, cpu1, wall1 = machine_busy_ticks(), os.times(), time.monotonic()
    other = None
    if busy0 is not None and busy1 is not None:
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        ours = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        other = max(0.0, ((busy1 - busy0) / hz - ours) / (wall1 - wall0))
    info["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    info["other_load_cpus"] = other
    info["wall_seconds"] = wall1 - wall0
    ratio = ratios(codec, baseline)

    if args.json:
        print(json.dumps({
            "machine": info, "settings": settings, "codec_error": CODEC_ERROR,
            "empty_loop_us": {"best": min(empty), "median": statistics.median(empty)},
            "codec": codec, "baseline": baseline, "typed_over_bare": ratio,
        }, indent=2))
    else:
        print("empty for-loop over the items: best %.3f us, median %.3f us per item"
              % (min(empty), statistics.median(empty)))
        print()
        if codec:
            print_table("mgcpswitch.mgcp codec (typed, validated):", codec)
        print_table("baseline: bare split-lines parser / line-joining encoder (no typing, no validation):",
                    baseline)
        if ratio:
            print("typed / bare, CRCX with SDP:")
            for r in ratio:
                print("  %-7s %-14s %6.1fx (best %.3f us vs %.3f us; medians give %.1fx)"
                      % (r["mode"], r["op"], r["ratio_best"], r["typed_best_us"], r["bare_best_us"],
                         r["ratio_median"]))
            print()
        print("run took %.0f s; load average at end %s; other load during the run: %s"
              % (info["wall_seconds"], info["loadavg_at_end"],
                 "%.2f CPUs (busy time of other processes, /proc/stat)" % other if other is not None
                 else "unknown"))
        if CODEC_ERROR:
            print("CODEC NOT MEASURED on this interpreter (see above); exit status 2")
    return 2 if CODEC_ERROR else 0


if __name__ == "__main__":
    sys.exit(main())
