"""
The trunk against baresip (Debian's baresip), a real softphone, over
loopback with real RTP: baresip calls the trunk and is called by it,
and is put on hold and taken off it by our re-INVITEs.

baresip registers to nothing (C{regint=0}), answers automatically, and
plays what it receives into an audio bridge that is also its source
(C{aubridge}): it sends back the audio it hears.  Our side of the media
is an L{RtpProbe} on loopback that sends a 1 kHz PCMU tone, 20 ms a
packet, to the address baresip's SDP gives and counts what comes back,
and how much of it is not silence: packets both ways, and the tone
through baresip's decoder and encoder.  Phase 2 puts the simulated
gateway's RTP where the probe is.
"""

from __future__ import annotations

import math
import random
import shutil
import struct
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import TestCase

from mgcpswitch.mgcp import SessionDescription
from mgcpswitch.sip.trunk import IncomingCall, SipTrunk
from tests.support.sip import Peer, Recorder, free_udp_port, line_sdp, settings

BARESIP = shutil.which("baresip")


def _ulaw(sample: int) -> int:
    """G.711 mu-law of a 16-bit sample."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 132
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


TONE = bytes(_ulaw(int(8000 * math.sin(2 * math.pi * 1000 * n / 8000))) for n in range(160))
SILENCE = frozenset((0xFF, 0x7F, 0xFE, 0x7E))


def _free_range(count: int) -> int:
    """
    The first of C{count} consecutive UDP ports free on 127.0.0.1, below
    the kernel's ephemeral range (so no port bound to 0 later can take
    one from baresip's RTP).
    """
    import socket

    for _ in range(100):
        base = random.randrange(20000, 25980, 2)  # free_udp_port takes 26000 and up
        sockets = []
        try:
            for port in range(base, base + count + 1):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError("no free range of UDP ports")


class RtpProbe(DatagramProtocol):
    """Sends a tone to C{remote} every 20 ms; counts packets back and those that are not silence."""

    def __init__(self) -> None:
        self.remote: tuple[str, int] | None = None
        self.sent = self.received = self.voiced = 0
        self.seq = random.randrange(65536)
        self.ssrc = random.getrandbits(32)
        self.sending = LoopingCall(self._send)
        self.port = reactor.listenUDP(0, self, interface="127.0.0.1")

    @property
    def number(self) -> int:
        return self.port.getHost().port  # type: ignore[no-any-return]

    def start(self, sdp: SessionDescription) -> None:
        self.remote = sdp.rtp_address
        self.sending.start(0.02)

    def _send(self) -> None:
        assert self.remote is not None
        header = struct.pack("!BBHII", 0x80, 0, self.seq & 0xFFFF, (self.sent * 160) & 0xFFFFFFFF, self.ssrc)
        self.transport.write(header + TONE, self.remote)
        self.seq += 1
        self.sent += 1

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        if len(data) > 12 and data[0] >> 6 == 2 and data[1] & 0x7F == 0:
            self.received += 1
            if sum(1 for b in data[12:] if b not in SILENCE) > len(data[12:]) // 2:
                self.voiced += 1

    def stop(self) -> Any:
        if self.sending.running:
            self.sending.stop()
        return self.port.stopListening()


class Baresip(TestCase):
    timeout = 90

    def setUp(self) -> None:
        if BARESIP is None:
            raise self.skipTest("baresip is not installed: scripts/run-tests installs it")
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-baresip-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.probe = RtpProbe()
        self.addCleanup(self.probe.stop)
        self.baresip_port = free_udp_port()
        rtp = _free_range(10)
        with open(f"{self.directory}/config", "w", encoding="ascii") as f:
            f.write(
                "poll_method epoll\nnet_interface 127.0.0.1\n"
                f"sip_listen 127.0.0.1:{self.baresip_port}\n"
                f"rtp_ports {rtp}-{rtp + 10}\n"
                "audio_player aubridge,echo\naudio_source aubridge,echo\naudio_alert aubridge,alert\n"
                "module_path /usr/lib/baresip/modules\n"
                "module g711.so\nmodule aubridge.so\n"
                "module_app account.so\nmodule_app menu.so\n"
            )
        with open(f"{self.directory}/accounts", "w", encoding="ascii") as f:
            f.write("<sip:bob@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU\n")
        with open(f"{self.directory}/contacts", "w", encoding="ascii") as f:
            f.write("")

    def trunk(self, incoming: Any) -> SipTrunk:
        trunk = SipTrunk(settings("baresip", 0, self.baresip_port), reactor, incoming, rng=random.Random())
        trunk.startService()
        self.addCleanup(trunk.stopService)
        return trunk

    def baresip(self, *commands: str, seconds: int = 30) -> Peer:
        argv = [BARESIP, "-f", self.directory, "-t", str(seconds), "-v"]
        for command in commands:
            argv += ["-e", command]
        return Peer(self, argv, self.directory, "baresip")

    def check_media(self, peer: Peer) -> None:
        probe = self.probe
        log = peer.output.decode(errors="replace")[-4000:]
        self.addCleanup(lambda: None)
        self.peer_log = log
        self.assertGreater(probe.sent, 50)
        self.assertGreater(probe.received, 50, f"no RTP came back from baresip:\n{log}")
        self.assertGreater(probe.voiced, 10, f"baresip sent back silence ({probe.received} packets)")

    async def call_bob(self, line: SessionDescription) -> tuple[SipTrunk, Peer, Any, Recorder]:
        """baresip started, the trunk calls bob there with C{line}; once answered the probe sends to its media."""
        trunk = self.trunk(lambda call: self.fail("no call was expected in"))
        peer = self.baresip(seconds=40)
        answered: Deferred[SessionDescription] = Deferred()

        class Listener(Recorder):
            def answered(self, sdp: SessionDescription) -> None:
                super().answered(sdp)
                answered.callback(sdp)

        listener = Listener()
        await deferLater(reactor, 1.0, lambda: None)  # baresip binds its port
        call = trunk.call("bob", line, listener)
        self.probe.start(await answered.addTimeout(30, reactor))
        return trunk, peer, call, listener

    async def test_baresip_calls_the_trunk(self) -> None:
        """baresip dials 2001 through the trunk; we answer with the probe's SDP; audio both ways; baresip's BYE ends it."""
        ended: Deferred[None] = Deferred()
        calls: list[IncomingCall] = []

        class Listener(Recorder):
            def ended(self, reason: str) -> None:
                super().ended(reason)
                ended.callback(None)

        listener = Listener()

        def incoming(call: IncomingCall) -> None:
            calls.append(call)
            call.listener = listener
            # No 180: baresip would play its ringback into the audio bridge,
            # which then stays the ringback's (ringing is shown against SIPp).
            call.answer(line_sdp(self.probe.number, pts=(0, 101)))
            self.probe.start(call.offer_sdp)

        trunk = self.trunk(incoming)
        peer = self.baresip(f"/dial sip:2001@127.0.0.1:{trunk.agent.port}", seconds=5)
        await ended.addTimeout(45, reactor)
        self.assertEqual(calls[0].number, "2001")
        self.assertEqual(calls[0].caller, "bob")
        await peer.ended.addTimeout(20, reactor)
        self.check_media(peer)
        self.assertEqual(trunk.view().channels_in_use, 0)

    async def test_trunk_calls_baresip(self) -> None:
        """The trunk calls bob at baresip, which answers by itself; audio both ways; our BYE ends it."""
        trunk, peer, call, listener = await self.call_bob(line_sdp(self.probe.number, pts=(0, 101)))
        await deferLater(reactor, 2.5, lambda: None)
        call.hang_up()
        await deferLater(reactor, 0.5, lambda: None)
        self.check_media(peer)
        self.assertEqual(trunk.view().channels_in_use, 0)
        self.assertEqual(trunk.view().statuses, {"out 200": 1})
        await peer.stop()

    async def test_baresip_held_and_resumed(self) -> None:
        """Our re-INVITEs to baresip: on hold (sendonly) it answers recvonly and its audio stops; resumed, it comes back."""
        # Its source is a sine here (48 kHz stereo, resampled to PCMU): with the
        # echo bridge as its source, baresip 1.0 (which restarts its player on
        # the hold) sent nothing after the resume.
        with open(f"{self.directory}/config", encoding="ascii") as f:
            config = f.read().replace("audio_source aubridge,echo", "audio_source ausine,1000")
        with open(f"{self.directory}/config", "w", encoding="ascii") as f:
            f.write(config + "module ausine.so\nausrc_srate 48000\nausrc_channels 2\n")
        line = line_sdp(self.probe.number, pts=(0, 101))
        trunk, peer, call, listener = await self.call_bob(line)
        await deferLater(reactor, 1.5, lambda: None)
        before_hold = self.probe.received
        self.assertGreater(before_hold, 20, f"no RTP from baresip:\n{peer.output.decode(errors='replace')[-3000:]}")
        held = await call.update(line_sdp(self.probe.number, pts=(0, 101), direction="sendonly")).addTimeout(10, reactor)
        self.assertEqual(held.audio.direction, "recvonly")
        await deferLater(reactor, 0.5, lambda: None)  # what was on its way
        on_hold = self.probe.received
        await deferLater(reactor, 1.5, lambda: None)
        self.assertLess(self.probe.received - on_hold, 5, "baresip kept sending while held")
        resumed = await call.update(line).addTimeout(10, reactor)
        self.assertIn(resumed.audio.direction, (None, "sendrecv"))
        back = self.probe.received
        await deferLater(reactor, 1.5, lambda: None)
        self.assertGreater(self.probe.received - back, 20,
                           "no RTP from baresip once resumed:\n" + peer.output.decode(errors="replace")[-3000:])
        self.assertEqual(listener.kinds()[-1], "answered")  # our own updates are no media_changed
        call.hang_up()
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(trunk.view().channels_in_use, 0)
        await peer.stop()
