# -*- test-case-name: tests.test_cluster_service -*-
"""
L{ClusterService}: one member of a cluster of call agents, as a Twisted
service: its leadership, its store and its transaction-id blocks, wired
so that call control only hears two things, C{became_active(epoch)} and
C{lost_leadership(reason)}.

- The store writes with the epoch of the current term; when the database
  refuses a write (another agent took over), the member fences itself.
- Transaction-id blocks are drawn while the member stands by, so that a
  takeover does not wait for them; C{became_active} is called once the
  reserve is in hand.
- On stop, what is queued is written before the member hands over (the
  next active's epoch would refuse it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .db import Session, ensure_schema
from ..txid import TransactionIdAllocator
from .ids import IdBlocks, call_id_prefix
from ..agent.model import ClusterView, Role
from .leadership import LeaseSettings, Leadership, LossReason
from .store import STORE_SETTINGS, PostgresStore

__all__ = ["MemberSettings", "ClusterService"]


@dataclass(frozen=True)
class MemberSettings:
    """One member's settings: the shared database and its own name (unique in the cluster)."""

    dsn: str
    name: str
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    batch_size: int = 200
    flush_interval: float = 1.0
    txid_block_size: int = 100_000
    txid_reserve: int = 2

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a cluster member needs a name")


class ClusterService(Service):
    """
    A member of the cluster.  C{store} is its L{IStore}; C{allocator} its
    transaction ids (the transaction layer's C{allocator}); C{leadership}
    its role.  C{clock} runs the timers, C{reactor} the database threads.
    """

    name = "cluster"
    log = Logger()

    def __init__(
        self, clock: IReactorTime, reactor: Any, settings: MemberSettings,
        became_active: Optional[Callable[[int], None]] = None,
        lost_leadership: Optional[Callable[[LossReason], None]] = None,
    ) -> None:
        self.settings = settings
        self.became_active = became_active
        self.lost_leadership = lost_leadership
        self._store_session = Session(reactor, settings.dsn, "store", STORE_SETTINGS, on_connect=ensure_schema)
        self.store = PostgresStore(
            clock, self._store_session, batch_size=settings.batch_size, flush_interval=settings.flush_interval,
            on_refused=self._refused,
        )
        self.ids = IdBlocks(
            clock, self._store_session, settings.name, settings.txid_block_size, settings.txid_reserve,
        )
        self.allocator = TransactionIdAllocator(blocks=self.ids)
        self.leadership = Leadership(
            clock, reactor, settings.dsn, settings.name, settings.lease, self._became_active, self._lost,
        )

    # -- for call control ---------------------------------------------------------

    @property
    def role(self) -> Role:
        return self.leadership.role

    @property
    def epoch(self) -> Optional[int]:
        return self.leadership.epoch

    def holds_lease(self) -> bool:
        """Whether this member may command gateways now (see L{Leadership.holds_lease})."""
        return self.leadership.holds_lease()

    @property
    def call_id_prefix(self) -> Optional[str]:
        """The CallId prefix of the current term, while active."""
        epoch = self.leadership.epoch
        return call_id_prefix(epoch) if self.leadership.role is Role.ACTIVE and epoch is not None else None

    def view(self) -> ClusterView:
        """The leadership as the faces show it, with the store's and the id blocks' counts."""
        return replace(self.leadership.view(), counters=self.counters())

    def counters(self) -> dict[str, int]:
        """For /metrics and /api/stats: the store's and the leadership's counts."""
        store = self.store
        return {
            "store_rows_written": store.rows_written, "store_batches": store.batches,
            "store_failures": store.failures, "store_lost_rows": store.lost_rows,
            "store_refused_rows": store.refused_rows, "store_pending": store.pending,
            "txid_blocks_drawn": self.ids.drawn, "txid_blocks_in_hand": self.ids.in_hand,
            **{f"leadership_{k}": v for k, v in self.leadership.counters.items()},
            "takeovers": self.leadership.takeovers,
        }

    # -- wiring -----------------------------------------------------------------------

    def _became_active(self, epoch: int) -> None:
        self.store.epoch = epoch

        def ready(_: Any) -> None:
            if self.leadership.role is Role.ACTIVE and self.leadership.epoch == epoch and self.became_active:
                self.became_active(epoch)

        self.ids.start().addCallback(ready)

    def _lost(self, reason: LossReason) -> None:
        # The store keeps the term's epoch: what is queued is still written
        # if no other agent took over, and refused if one did.
        if self.lost_leadership is not None:
            self.lost_leadership(reason)

    def _refused(self, epoch: int) -> None:
        self.leadership.fence(LossReason.REFUSED, epoch)

    # -- the service ------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        super().startService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        IService(self.store).startService()
        self.ids.start()
        self.leadership.start()

    def stopService(self) -> Deferred[None]:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        # Write what is queued while our epoch is still the cluster's, then
        # hand over, then close.
        d = self.store.stopService()
        d.addBoth(lambda _: self.leadership.stop())
        d.addBoth(lambda _: self.ids.stop())
        d.addBoth(lambda _: self._store_session.close())
        return d
