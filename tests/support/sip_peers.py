"""
Real SIP programs as the far end of a trunk, started by a test in its own
temporary directory on loopback ports found free, and stopped by their
PID (L{tests.support.sip.Peer}):

  - SIPp (Debian's sip-tester) playing a scenario given as XML text, or a
    variant of its own built-in UAC (L{sipp_uac}: SIPp's C{-sd uac} with
    another caller, or ending on a refusal);
  - baresip registering to nothing, answering by itself, sending back what
    it hears (an audio bridge), and writing what it decoded and encoded to
    WAV files (its C{sndfile} module): L{Baresip.packets} counts the 20 ms
    frames each way, baresip's own word for the RTP it received and sent.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import wave
from typing import Any

from .sip import Peer, free_udp_port

__all__ = ["SIPP", "BARESIP", "sipp", "sipp_uac", "Baresip"]

SIPP = shutil.which("sipp")
BARESIP = shutil.which("baresip")


def sipp(testcase: Any, directory: str, name: str, xml: str, port: int, *args: str,
         media_port: int | None = None) -> Peer:
    """
    SIPp playing C{xml} once from 127.0.0.1:C{port} (its media on
    C{media_port}, else a free port); C{args} add a target (C{HOST:PORT})
    and options.  It must exit 0: every message came as the scenario says.
    """
    assert SIPP is not None
    path = f"{directory}/{name}.xml"
    with open(path, "w", encoding="ascii") as f:
        f.write(xml)
    argv = [SIPP, "-sf", path, "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
            "-mp", str(media_port or free_udp_port()), "-m", "1", "-nostdin", "-timeout", "60s",
            "-timeout_error", "-trace_err", *args]
    return Peer(testcase, argv, directory, "sipp")


def sipp_uac(caller: str, refused: int | None = None) -> str:
    """
    SIPp's built-in UAC scenario (C{sipp -sd uac}: INVITE to C{-s NUMBER},
    100/180/183 optional, 200, ACK, a pause of C{-d} ms, BYE) calling from
    the number C{caller}; with C{refused}, the call must instead end on
    that final status, which SIPp acknowledges.
    """
    assert SIPP is not None
    # SIPp exits 99 after dumping a scenario: what it printed is checked instead.
    text = subprocess.run([SIPP, "-sd", "uac"], capture_output=True, text=True, timeout=30).stdout
    text = text.replace("sipp <sip:sipp@", f"<sip:{caller}@").replace("sip:sipp@", f"sip:{caller}@")
    assert f"<sip:{caller}@" in text and "sipp@" not in text and "</scenario>" in text, "SIPp's uac scenario changed"
    if refused is None:
        return text
    head, found, _ = text.partition('<recv response="200" rtd="true">')
    assert found, "SIPp's uac scenario changed"
    ack = (f"ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\n"
           f"From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n[last_To:]\n"
           "Call-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0")
    return f'{head}<recv response="{refused}"/>\n<send><![CDATA[\n\n{ack}\n\n]]></send>\n</scenario>\n'


class Baresip:
    """
    baresip with one account, C{<sip:USER@127.0.0.1>}, answering by itself
    (C{regint=0}: it registers nowhere), on free loopback ports.
    """

    def __init__(self, testcase: Any, directory: str, user: str) -> None:
        assert BARESIP is not None
        from tests.test_sip_baresip import _free_range

        self.testcase = testcase
        self.directory = directory
        self.port = free_udp_port()
        rtp = _free_range(10)
        with open(f"{directory}/config", "w", encoding="ascii") as f:
            f.write(
                "poll_method epoll\nnet_interface 127.0.0.1\n"
                f"sip_listen 127.0.0.1:{self.port}\n"
                f"rtp_ports {rtp}-{rtp + 10}\n"
                "audio_player aubridge,echo\naudio_source aubridge,echo\naudio_alert aubridge,alert\n"
                "module_path /usr/lib/baresip/modules\n"
                "module g711.so\nmodule aubridge.so\nmodule sndfile.so\n"
                f"snd_path {directory}\n"
                "module_app account.so\nmodule_app menu.so\n"
                # A ringback played into the bridge would keep it: no echo after the answer.
                "ringback_disabled yes\n"
            )
        with open(f"{directory}/accounts", "w", encoding="ascii") as f:
            f.write(f"<sip:{user}@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU\n")
        with open(f"{directory}/contacts", "w", encoding="ascii") as f:
            f.write("")
        self.peer: Peer | None = None

    def start(self, *commands: str, seconds: int = 60) -> Peer:
        """Run baresip (for at most C{seconds}), executing C{commands} (C{/dial ...}) once ready."""
        argv = [BARESIP, "-f", self.directory, "-t", str(seconds), "-v"]
        for command in commands:
            argv += ["-e", command]
        self.peer = Peer(self.testcase, argv, self.directory, "baresip")
        return self.peer

    def ready(self) -> bool:
        """baresip has bound its ports and loaded its account."""
        return self.peer is not None and b"baresip is ready" in self.peer.output

    def log(self) -> str:
        return self.peer.output.decode(errors="replace")[-4000:] if self.peer is not None else ""

    def packets(self) -> dict[str, int]:
        """
        The 20 ms frames baresip decoded (C{received}) and encoded
        (C{sent}) in its call, from the WAV files its sndfile module closed
        when the call ended.
        """
        counts = {}
        for kind, name in (("dec", "received"), ("enc", "sent")):
            [path] = glob.glob(f"{self.directory}/dump-*-{kind}.wav")
            with wave.open(path) as w:
                counts[name] = w.getnframes() // (w.getframerate() // 50)
        return counts
