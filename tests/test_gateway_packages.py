"""
Conformance of the simulated gateway, one group per package: line (L),
DTMF (D), generic media (G) and base (B) of RFC 3660 and RFC 3435 App. B
(digest §5): signal types and durations, preconditions, events, digit
collection with the inter-digit timers.
"""

from __future__ import annotations

from mgcpswitch.gateway.packages import PACKAGES, SignalType, lookup
from mgcpswitch.mgcp import ParamCode as P

from .support.gateway import GatewayTestCase, sdp


class LinePackage(GatewayTestCase):
    """L: hook events, tones, ringing, caller id (RFC 3660 §2.4)."""

    def test_ringing_needs_on_hook_and_stops_on_answer(self) -> None:
        """L/rg off-hook is 401; on-hook it rings until the requested off-hook event."""
        self.h.line(2).off_hook()
        self.assertEqual(self.rqnt("aaln/2", "X: 1", "S: L/rg").code, 401)
        self.assertEqual(self.rqnt("aaln/1", "X: 2", "R: L/hd(N)", "S: L/rg").code, 200)
        self.assertTrue(self.h.line(1).ringing)
        self.h.line(1).off_hook()
        self.assertFalse(self.h.line(1).ringing)
        [ntfy] = self.h.ntfys()
        self.assertEqual((ntfy.request_id, self.h.observed(ntfy)), ("2", ["L/hd"]))

    def test_off_hook_tones_need_off_hook(self) -> None:
        """dl, bz, wt, mwi, ot, sl and G/rt on the endpoint: 402 while on-hook."""
        for signal in ("L/dl", "L/bz", "L/wt", "L/mwi", "L/ot", "L/sl", "G/rt", "G/cf", "D/5"):
            self.assertEqual(self.rqnt("aaln/1", "X: 1", f"S: {signal}").code, 402, signal)
        self.h.line(1).off_hook()
        for signal in ("L/dl", "L/bz", "L/wt", "G/rt", "L/ro"):
            self.assertEqual(self.rqnt("aaln/1", "X: 1", f"S: {signal}").code, 200, signal)

    def test_hook_event_preconditions(self) -> None:
        """Requesting hd while off-hook is 401; hu or hf while on-hook 402 (§4.4.2)."""
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hu(N)").code, 402)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hf(N)").code, 402)
        self.h.line(1).off_hook()
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hd(N)").code, 401)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hu(N), L/hf(N)").code, 200)

    def test_dial_tone_times_out_with_operation_complete(self) -> None:
        """L/dl stops after its 16 s default; L/oc(L/dl) is reported when requested."""
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "R: L/oc(N), L/hu(N)", "S: L/dl")
        self.h.advance(15.9)
        self.assertEqual((self.h.line(1).signals, self.h.ntfys()), ({"L/dl"}, []))
        self.h.advance(0.1)
        self.assertEqual(self.h.line(1).signals, set())
        [ntfy] = self.h.ntfys()
        self.assertEqual(self.h.observed(ntfy), ["L/oc(L/dl)"])

    def test_to_and_rep_override_the_duration(self) -> None:
        """to= (ms) replaces the default time-out; rep= rings n cadences of 6 s."""
        self.rqnt("aaln/1", "X: 1", "S: L/rg(to=6000)")
        self.rqnt("aaln/2", "X: 1", "S: L/rg(rep=2)")
        self.rqnt("aaln/3", "X: 1", "S: L/r2(to(4000))")
        self.h.advance(3.9)
        self.assertEqual([self.h.line(n).ringing for n in (1, 2, 3)], [True, True, True])
        self.h.advance(0.1)
        self.assertEqual([self.h.line(n).ringing for n in (1, 2, 3)], [True, True, False])
        self.h.advance(2.0)
        self.assertEqual([self.h.line(n).ringing for n in (1, 2, 3)], [False, True, False])
        self.h.advance(6.0)
        self.assertFalse(self.h.line(2).ringing)

    def test_repeated_to_signal_keeps_its_original_timer(self) -> None:
        """A TO signal named again goes on uninterrupted; one left out stops (§2.3.3)."""
        self.rqnt("aaln/1", "X: 1", "S: L/rg")
        self.h.advance(100)
        self.rqnt("aaln/1", "X: 2", "S: L/rg")
        self.h.advance(79.9)
        self.assertTrue(self.h.line(1).ringing)
        self.h.advance(0.1)
        self.assertFalse(self.h.line(1).ringing, "stopped at 180 s from the first request")
        self.rqnt("aaln/1", "X: 3", "S: L/rg")
        self.rqnt("aaln/1", "X: 4", "S:")
        self.assertFalse(self.h.line(1).ringing)

    def test_on_off_signal_stays_until_turned_off(self) -> None:
        """L/vmwi stays on across requests that do not name it, until L/vmwi(-)."""
        self.rqnt("aaln/1", "X: 1", "S: L/vmwi")
        self.rqnt("aaln/1", "X: 2", "S: L/rg")
        self.h.advance(200)
        self.assertEqual(self.h.line(1).signals, {"L/vmwi"})
        self.rqnt("aaln/1", "X: 3", "S: L/vmwi(-)")
        self.assertEqual(self.h.line(1).signals, set())
        self.assertEqual(self.rqnt("aaln/1", "X: 4", "S: L/vmwi(+)").code, 200)
        self.assertEqual(self.h.line(1).signals, {"L/vmwi"})

    def test_caller_id_is_a_brief_signal(self) -> None:
        """L/ci plays briefly beside the ringing and the line keeps its parameters."""
        r = self.rqnt("aaln/1", "X: 1", 'S: L/rg, L/ci(09/14/17/26,"555 1212","John Doe")')
        self.assertEqual(r.code, 200)
        line = self.h.line(1)
        self.assertEqual(line.signals, {"L/rg", "L/ci"})
        self.assertEqual(line.caller_id, ("09/14/17/26", "555 1212", "John Doe"))
        audit = self.auep("aaln/1", "F: S")
        self.assertIn('L/ci(09/14/17/26,"555 1212","John Doe")', [str(s) for s in audit.params[P.SIGNAL_REQUESTS]])
        self.h.advance(1)
        self.assertEqual(line.signals, {"L/rg"})
        self.assertEqual(self.rqnt("aaln/1", "X: 2", "S: L/ci(1,2)").code, 538)

    def test_requested_event_stops_timeout_signals_unless_K(self) -> None:
        """A requested event stops TO signals (dial tone at the first digit) unless it has K."""
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "R: D/[0-9](N)", "S: L/dl")
        self.h.line(1).dial("5")
        self.assertEqual(self.h.line(1).signals, set())
        self.h.line(2).off_hook()
        self.rqnt("aaln/2", "X: 1", "R: D/[0-9](N,K)", "S: L/dl")
        self.h.line(2).dial("5")
        self.assertEqual(self.h.line(2).signals, {"L/dl"})

    def test_ignore_and_keep(self) -> None:
        """I: the event is neither observed nor notified but stops TO signals; K+I keeps them."""
        line = self.h.line(1)
        line.off_hook()
        self.rqnt("aaln/1", "X: 1", "R: L/hf(I), L/hu(N)", "S: L/dl")
        line.flash()
        self.assertEqual((line.signals, line.observed_events, self.h.ntfys()), (set(), (), []))
        self.rqnt("aaln/1", "X: 2", "R: L/hf(K,I), L/hu(N)", "S: L/dl")
        line.flash()
        self.assertEqual(line.signals, {"L/dl"})
        line.on_hook()
        self.assertEqual([self.h.observed(n) for n in self.h.ntfys()], [["L/hu"]])

    def test_hook_flash(self) -> None:
        """L/hf is reported while off-hook; physical stops: ringing ends when the phone is lifted."""
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "R: L/hf(N)")
        self.h.line(1).flash()
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["L/hf"])
        self.rqnt("aaln/2", "X: 1", "S: L/rg")
        self.h.line(2).off_hook()
        self.assertFalse(self.h.line(2).ringing)

    def test_signal_and_parameter_errors(self) -> None:
        """Unknown signal 522, unknown package 518, bad to= 538, parameters where none go 538."""
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: L/xyz").code, 522)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: L/hd").code, 522, "an event is no signal")
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: Y/dl").code, 518)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: L/rg(to=abc)").code, 538)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: L/rg(rep=0)").code, 538)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: L/rs(foo)").code, 538)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: L/vmwi(to=100)").code, 538)

    def test_unprefixed_names_use_the_default_package(self) -> None:
        """'hd' is L/hd and '[0-9]' D's digits (RFC 3435 §2.1.6)."""
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "R: hu(N), [0-9](N)", "S: dl")
        self.assertEqual(self.h.line(1).signals, {"L/dl"})
        self.h.line(1).dial("3")
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["D/3"])


class DTMFPackage(GatewayTestCase):
    """D: digits and digit collection against the pushed map (RFC 3660 §2.2, RFC 3435 §2.1.5)."""

    def setUp(self) -> None:
        super().setUp()
        self.h.line(1).off_hook()

    def collect(self, digit_map: str, requested: str = "L/hu(N), D/[0-9#*T](D)") -> None:
        self.assertEqual(self.rqnt("aaln/1", "X: 9", f"R: {requested}", "S: L/dl", f"D: {digit_map}").code, 200)

    def test_notify_on_exact_match(self) -> None:
        """Digits accumulate silently until the map matches, then one NTFY lists them."""
        self.collect("(xxxxxxx|x11)")
        self.h.line(1).dial("41", gap=0.5)
        self.h.advance(1)
        self.assertEqual(self.h.ntfys(), [])
        self.assertEqual(self.h.line(1).dial_string, "41")
        self.h.line(1).dial("1")
        [ntfy] = self.h.ntfys()
        self.assertEqual(self.h.observed(ntfy), ["D/4", "D/1", "D/1"])
        self.assertEqual(ntfy.request_id, "9")

    def test_notify_on_impossible_match(self) -> None:
        """A digit that no alternative can follow notifies at once (§2.1.5 step 4)."""
        self.collect("(911|0xx)")
        self.h.line(1).dial("95")
        self.h.advance(0.1)
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["D/9", "D/5"])

    def test_t_critical_after_a_possible_end(self) -> None:
        """(xxxxxxx|x11T): after 4,1,1 only the timer can complete: T-critical 4 s (RFC 3660 §2.2)."""
        self.collect("(xxxxxxx|x11T)")
        self.h.line(1).dial("411", gap=0.1)
        self.h.advance(0.2 + 3.9)
        self.assertEqual(self.h.ntfys(), [])
        self.h.advance(0.11)
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["D/4", "D/1", "D/1", "D/T"])

    def test_t_partial_while_digits_are_missing(self) -> None:
        """(xxxx): after two digits the 16 s T-partial expires into an impossible match."""
        self.collect("(xxxx)")
        self.h.line(1).dial("12", gap=0.1)
        self.h.advance(0.1 + 15.9)
        self.assertEqual(self.h.ntfys(), [])
        self.h.advance(0.11)
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["D/1", "D/2", "D/T"])

    def test_no_timer_unless_T_is_requested(self) -> None:
        """Without D/T in R: no inter-digit timing at all (RFC 3660 §2.2)."""
        self.collect("(xxxx)", "L/hu(N), D/[0-9](D)")
        self.h.line(1).dial("12")
        self.h.advance(100)
        self.assertEqual(self.h.ntfys(), [])
        self.assertEqual(self.h.line(1).dial_string, "12")

    def test_timer_without_D_action_starts_at_once(self) -> None:
        """R: D/[0-9](N), D/T(N): the timer runs from the RQNT (T-critical) until the first digit."""
        self.rqnt("aaln/1", "X: 1", "R: D/[0-9](N), D/T(N)")
        self.h.advance(4)
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["D/T"])
        self.rqnt("aaln/1", "X: 2", "R: D/[0-9](N), D/T(N)")
        self.h.advance(2)
        self.h.line(1).dial("7")
        self.h.advance(10)
        self.assertEqual([self.h.observed(n) for n in self.h.ntfys()], [["D/T"], ["D/7"]])

    def test_map_with_star_and_hash(self) -> None:
        """The RFC's (0[12].|00|1[12].1|2x.#): '2345#' matches, '0' matches at once."""
        self.collect("(0[12].|00|1[12].1|2x.#)")
        self.h.line(1).dial("2345#")
        self.h.advance(0.4)
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["D/2", "D/3", "D/4", "D/5", "D/#"])
        self.collect("(0[12].|00|1[12].1|2x.#)")
        self.h.line(1).dial("0")
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["D/0"])

    def test_d_action_needs_digits(self) -> None:
        """The D action on a non-digit event is 523."""
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hu(D)", "D: (xx)").code, 523)

    def test_digit_signal_is_brief(self) -> None:
        """S: D/5 plays a short DTMF tone while off-hook and then stops."""
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: D/5").code, 200)
        self.assertEqual(self.h.line(1).signals, {"D/5"})
        self.h.advance(0.1)
        self.assertEqual(self.h.line(1).signals, set())


class GenericMediaPackage(GatewayTestCase):
    """G: ringback on the endpoint and on a connection, operation failure (RFC 3660 §2.1)."""

    def test_ringback_on_a_connection_ignores_the_hook(self) -> None:
        """G/rt@conn plays on-hook; deleting the connection is a failure: G/of(G/rt@conn)."""
        cid = self.crcx("aaln/1", "C: A1", "M: sendrecv", sdp=sdp()).connection_id
        self.assertEqual(self.rqnt("aaln/1", "X: 1", f"S: G/rt@{cid}", "R: G/of(N)").code, 200)
        self.assertEqual(self.h.line(1).signals, {f"G/rt@{cid}"})
        self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", f"I: {cid}")
        self.assertEqual(self.h.line(1).signals, set())
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), [f"G/of(G/rt@{cid})"])

    def test_ringback_times_out_after_180_s(self) -> None:
        """G/rt is a 180 s time-out signal; its completion is G/oc(G/rt)."""
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "S: G/rt", "R: G/oc(N)")
        self.h.advance(180)
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["G/oc(G/rt)"])

    def test_injected_events(self) -> None:
        """Events the simulator cannot hear by itself (fax tone) are injected through the line."""
        self.rqnt("aaln/1", "X: 1", "R: G/ft(N)")
        self.h.line(1).event("G/ft")
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["G/ft"])


class BasePackageAndTables(GatewayTestCase):
    """B and the tables themselves (RFC 3435 App. B, digest §5)."""

    def test_tables_match_the_digest(self) -> None:
        """Types, default durations and preconditions as the digest's tables say."""
        rows = {
            ("L", "rg"): (SignalType.TIME_OUT, 180.0), ("L", "dl"): (SignalType.TIME_OUT, 16.0),
            ("L", "bz"): (SignalType.TIME_OUT, 30.0), ("L", "ro"): (SignalType.TIME_OUT, 30.0),
            ("L", "wt"): (SignalType.TIME_OUT, 12.0), ("L", "vmwi"): (SignalType.ON_OFF, 0.0),
            ("G", "rt"): (SignalType.TIME_OUT, 180.0), ("D", "dd"): (SignalType.TIME_OUT, 3.0),
            ("L", "osi"): (SignalType.TIME_OUT, 0.9),
        }
        for (package, name), (kind, duration) in rows.items():
            _, symbol = lookup(package, name)
            self.assertEqual((symbol.signal, symbol.duration), (kind, duration), name)
        self.assertEqual(lookup("L", "ci")[1].signal, SignalType.BRIEF)
        self.assertEqual(sorted(PACKAGES["B"].symbols), ["enf", "oef", "qbo"])
        self.assertTrue(lookup("L", "hd")[1].state and lookup("L", "hu")[1].state)

    def test_all_of_a_package(self) -> None:
        """L/all requests every event of L: the off-hook is reported."""
        self.rqnt("aaln/1", "X: 1", "R: L/all(N)")
        self.h.line(1).off_hook()
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["L/hd"])
