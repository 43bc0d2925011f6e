"""
The per-line state machine, pair by pair: every (state, input) pair of
L{LineState} x L{LineInput} is either in the table with the expected next
state and action, or refused with L{InvalidTransition}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.lines import ANY_STATE, TRANSITIONS, Action, InvalidTransition, LineInput, transition
from mgcpswitch.agent.model import LineState

S, I, A = LineState, LineInput, Action

# The whole machine written out once more, independently of the table: a
# change to either that is not made to both fails here.
EXPECTED = {
    (S.IDLE, I.OFF_HOOK): (S.DIAL_TONE, A.DIAL_TONE),
    (S.IDLE, I.OFF_HOOK_DIALLING): (S.COLLECTING, A.NONE),
    (S.IDLE, I.INCOMING): (S.RINGING, A.NONE),
    (S.IDLE, I.ON_HOOK): (S.IDLE, A.ARM_IDLE),
    (S.DIAL_TONE, I.ARMED): (S.COLLECTING, A.NONE),
    (S.DIAL_TONE, I.DIGITS): (S.ROUTING, A.ROUTE),
    (S.DIAL_TONE, I.ON_HOOK): (S.IDLE, A.ARM_IDLE),
    (S.DIAL_TONE, I.OFF_HOOK): (S.DIAL_TONE, A.DIAL_TONE),
    (S.COLLECTING, I.DIGITS): (S.ROUTING, A.ROUTE),
    (S.COLLECTING, I.ON_HOOK): (S.IDLE, A.ARM_IDLE),
    (S.COLLECTING, I.OFF_HOOK): (S.DIAL_TONE, A.DIAL_TONE),
    (S.ROUTING, I.ALERTING): (S.RINGBACK, A.NONE),
    (S.ROUTING, I.ROUTE_BUSY): (S.BUSY, A.BUSY_TONE),
    (S.ROUTING, I.ROUTE_FAILED): (S.REORDER, A.REORDER_TONE),
    (S.ROUTING, I.ON_HOOK): (S.RELEASING, A.RELEASE),
    (S.ROUTING, I.FAR_END_RELEASED): (S.RELEASING, A.RELEASE),
    (S.RINGBACK, I.ANSWERED): (S.CONNECTED, A.NONE),
    (S.RINGBACK, I.ON_HOOK): (S.RELEASING, A.RELEASE),
    (S.RINGBACK, I.FAR_END_RELEASED): (S.RELEASING, A.RELEASE),
    (S.RINGING, I.OFF_HOOK): (S.CONNECTED, A.ANSWER),
    (S.RINGING, I.PICKED_UP): (S.ROUTING, A.CALL_FAR_END),
    (S.RINGING, I.RING_REFUSED): (S.IDLE, A.NONE),
    (S.RINGING, I.FAR_END_RELEASED): (S.RELEASING, A.RELEASE),
    (S.CONNECTED, I.ON_HOOK): (S.RELEASING, A.RELEASE),
    (S.CONNECTED, I.FAR_END_RELEASED): (S.RELEASING, A.RELEASE),
    (S.RELEASING, I.ON_HOOK): (S.RELEASING, A.NONE),
    (S.RELEASING, I.OFF_HOOK): (S.RELEASING, A.NONE),
    (S.RELEASING, I.FAR_END_RELEASED): (S.RELEASING, A.NONE),
    (S.RELEASING, I.RELEASED_ON_HOOK): (S.IDLE, A.NONE),
    (S.RELEASING, I.RELEASED_OFF_HOOK): (S.BUSY, A.NONE),
    (S.RELEASING, I.RELEASED_REORDER): (S.REORDER, A.NONE),
    (S.RELEASING, I.CLEARED_ON_HOOK): (S.IDLE, A.ARM_IDLE),
    (S.RELEASING, I.CLEARED_OFF_HOOK): (S.BUSY, A.BUSY_TONE),
    (S.RELEASING, I.CLEARED_REORDER): (S.REORDER, A.REORDER_TONE),
    (S.RELEASING, I.CLEARED_DIALLING): (S.DIAL_TONE, A.DIAL_TONE),
    (S.BUSY, I.ON_HOOK): (S.IDLE, A.ARM_IDLE),
    (S.BUSY, I.OFF_HOOK): (S.DIAL_TONE, A.DIAL_TONE),
    (S.REORDER, I.ON_HOOK): (S.IDLE, A.ARM_IDLE),
    (S.REORDER, I.OFF_HOOK): (S.DIAL_TONE, A.DIAL_TONE),
    (S.UNKNOWN, I.OFF_HOOK): (S.DIAL_TONE, A.DIAL_TONE),
    (S.UNKNOWN, I.ON_HOOK): (S.IDLE, A.ARM_IDLE),
    (S.UNKNOWN, I.RESUMED): (S.CONNECTED, A.NONE),
    # Services.
    (S.CONNECTED, I.FLASH): (S.CONNECTED, A.FLASH),
    (S.HOLDING, I.FLASH): (S.HOLDING, A.FLASH),
    (S.DIAL_TONE, I.FLASH): (S.DIAL_TONE, A.FLASH),
    (S.COLLECTING, I.FLASH): (S.COLLECTING, A.FLASH),
    (S.RINGBACK, I.FLASH): (S.RINGBACK, A.FLASH),
    (S.CONFERENCE, I.FLASH): (S.CONFERENCE, A.FLASH),
    (S.BUSY, I.FLASH): (S.BUSY, A.FLASH),
    (S.REORDER, I.FLASH): (S.REORDER, A.FLASH),
    (S.CONNECTED, I.HOLD): (S.DIAL_TONE, A.RECALL_DIAL_TONE),
    (S.CONNECTED, I.RETRIEVED): (S.CONNECTED, A.WATCH_CALL),
    (S.HOLDING, I.RETRIEVED): (S.CONNECTED, A.WATCH_CALL),
    (S.DIAL_TONE, I.RETRIEVED): (S.CONNECTED, A.WATCH_CALL),
    (S.COLLECTING, I.RETRIEVED): (S.CONNECTED, A.WATCH_CALL),
    (S.RINGBACK, I.RETRIEVED): (S.CONNECTED, A.WATCH_CALL),
    (S.BUSY, I.RETRIEVED): (S.CONNECTED, A.WATCH_CALL),
    (S.REORDER, I.RETRIEVED): (S.CONNECTED, A.WATCH_CALL),
    (S.CONNECTED, I.JOINED): (S.CONFERENCE, A.WATCH_CALL),
    (S.RINGBACK, I.JOINED): (S.CONFERENCE, A.WATCH_CALL),
    (S.CONFERENCE, I.PARTY_LEFT): (S.CONNECTED, A.WATCH_CALL),
    (S.CONFERENCE, I.ON_HOOK): (S.RELEASING, A.RELEASE),
    (S.CONNECTED, I.TRANSFERRED): (S.RINGBACK, A.NONE),
    (S.RINGING, I.DROPPED): (S.RELEASING, A.NONE),
    (S.RELEASING, I.ACTIVE_GONE): (S.HOLDING, A.BUSY_TONE),
    (S.RELEASING, I.ACTIVE_FAILED): (S.HOLDING, A.REORDER_TONE),
    (S.RELEASING, I.RECALL): (S.RECALLING, A.RING),
    (S.DIAL_TONE, I.RECALL): (S.RECALLING, A.RING),
    (S.COLLECTING, I.RECALL): (S.RECALLING, A.RING),
    (S.BUSY, I.RECALL): (S.RECALLING, A.RING),
    (S.REORDER, I.RECALL): (S.RECALLING, A.RING),
    (S.HOLDING, I.ON_HOOK): (S.RECALLING, A.RING),
    (S.HOLDING, I.HELD_GONE): (S.BUSY, A.BUSY_TONE),
    (S.RECALLING, I.OFF_HOOK): (S.CONNECTED, A.ANSWER_RECALL),
    (S.RECALLING, I.HELD_GONE): (S.IDLE, A.ARM_IDLE),
    (S.ROUTING, I.FEATURE_NUMBER): (S.DIAL_TONE, A.STUTTER_DIAL_TONE),
    (S.ROUTING, I.FEATURE_DONE): (S.CONFIRMED, A.CONFIRM_TONE),
    (S.CONFIRMED, I.ON_HOOK): (S.IDLE, A.ARM_IDLE),
    (S.CONFIRMED, I.OFF_HOOK): (S.DIAL_TONE, A.DIAL_TONE),
}
# Whatever the state: the gateway lost the line, or says it is not there.
for _state in LineState:
    EXPECTED[(_state, I.RESET)] = (S.UNKNOWN, A.NONE)
    EXPECTED[(_state, I.RESTARTING)] = (S.RESTARTING, A.NONE)
    EXPECTED[(_state, I.OUT_OF_SERVICE)] = (S.OUT_OF_SERVICE, A.NONE)


def edges() -> list[tuple[LineState, LineState]]:
    """Every (state, next state) the machine allows, whatever the input."""
    pairs = [(source, target) for (source, _), (target, _) in TRANSITIONS.items()]
    pairs += [(source, target) for source in LineState for target, _ in ANY_STATE.values()]
    return pairs


class EveryPair(SynchronousTestCase):
    def test_every_pair(self) -> None:
        """Each of the |states| x |inputs| pairs gives the expected transition or is refused."""
        checked = 0
        for state in LineState:
            for event in LineInput:
                expected = EXPECTED.get((state, event))
                if expected is None:
                    self.assertRaises(InvalidTransition, transition, state, event)
                else:
                    self.assertEqual(transition(state, event), expected, (state, event))
                checked += 1
        self.assertEqual(checked, len(LineState) * len(LineInput))
        explicit = {pair for pair in EXPECTED if pair[1] not in ANY_STATE}
        self.assertEqual(set(TRANSITIONS), explicit)

    def test_every_state_but_unknown_is_reachable_from_idle(self) -> None:
        """The table connects: from idle every state can be reached (unknown only by reset)."""
        reached = {S.IDLE}
        frontier = [S.IDLE]
        while frontier:
            state = frontier.pop()
            for source, target in edges():
                if source is state and target not in reached:
                    reached.add(target)
                    frontier.append(target)
        self.assertEqual(reached, set(LineState))

    def test_every_state_can_return_to_idle(self) -> None:
        """No state is a trap: each leads back to idle through some inputs."""
        for start in LineState:
            seen = {start}
            frontier = [start]
            while frontier:
                state = frontier.pop()
                for source, target in edges():
                    if source is state and target not in seen:
                        seen.add(target)
                        frontier.append(target)
            self.assertIn(S.IDLE, seen, start)

    def test_invalid_transition_says_what(self) -> None:
        """The error names the input and the state."""
        error = self.assertRaises(InvalidTransition, transition, S.IDLE, I.ANSWERED)
        self.assertEqual(str(error), "answered is not expected in state idle")
