# -*- test-case-name: tests.test_cluster_leadership -*-
"""
Which agent of a cluster is active: a PostgreSQL session advisory lock,
a lease, and an epoch.

- B{The lock.}  The active holds the session advisory lock L{LOCK_KEY} on
  its leadership session; standbys wait for it (blocking, in slices of
  C{wait_slice} through C{lock_timeout}, so that they can stop).
  PostgreSQL frees the lock when the holder's session ends: within
  milliseconds when the holder's process dies (its socket closes), and
  after C{idle_timeout} when it freezes (SIGSTOP, a stalled VM, a network
  partition), because the session carries C{idle_session_timeout} and the
  active's heartbeat is what keeps it busy.
- B{The lease.}  The active renews its lease every C{heartbeat} seconds
  (an UPDATE of the lease row, conditional on its epoch).  A renewal
  counts from the moment it was sent; an active whose last renewal is
  C{lease} old stops by itself (self-fencing: L{lost_leadership} with
  L{LossReason.LEASE_EXPIRED}) and comes back as a standby.  Since
  C{lease} < C{idle_timeout}, a frozen active is fenced before PostgreSQL
  frees its lock; L{holds_lease} lets the caller check the lease before
  each command it sends, which also covers a process thawed after SIGSTOP
  that reads its sockets before its timers run.
- B{The epoch.}  Every takeover increments the epoch (the C{cluster_leader}
  row) and writes of an active are conditional on it (L{check_epoch}), so
  a stale active can neither command through the store nor overwrite it.
- B{Restarts of PostgreSQL.}  A restart frees the lock while the active
  is alive and unfenced.  A standby that gets the lock therefore looks at
  the lease row: if the server started after the holder's last renewal,
  it leaves the holder C{idle_timeout} from that renewal to take its lock
  back (an active that lost its session takes the lock again at once and
  keeps its epoch), and takes over only after that.

All timers run on the injected clock; the database work runs in the
session's thread (L{Session}).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import psycopg
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..agent.model import ClusterView, Role
from .db import LOCK_KEY, Session, ensure_schema, is_transient

__all__ = ["Role", "LossReason", "LeaseSettings", "Leadership"]


class LossReason(enum.Enum):
    """Why an active stopped being one."""

    __hash__ = object.__hash__
    LEASE_EXPIRED = "lease-expired"  # no renewal within the lease: it fenced itself
    SUPERSEDED = "superseded"  # another agent took over (the epoch moved on)
    REFUSED = "refused"  # the store's write was refused: its epoch is over
    STOPPED = "stopped"  # stop() while active


@dataclass(frozen=True)
class LeaseSettings:
    """
    The lease's times, in seconds.  C{heartbeat} < C{lease} < C{idle_timeout}:
    an active renews several times per lease, and fences itself before
    PostgreSQL ends its frozen session.
    """

    heartbeat: float = 0.25
    lease: float = 1.0
    idle_timeout: float = 1.5  # idle_session_timeout of the leadership session
    wait_slice: float = 0.5  # a standby's blocking wait for the lock, per statement
    retry: float = 0.5  # after the database failed a standby's attempt

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat < self.lease < self.idle_timeout:
            raise ValueError(
                f"the lease needs 0 < heartbeat ({self.heartbeat}) < lease ({self.lease}) "
                f"< idle_timeout ({self.idle_timeout})"
            )
        if self.wait_slice <= 0 or self.retry <= 0:
            raise ValueError("wait_slice and retry must be positive")

    def session_settings(self) -> tuple[str, ...]:
        return (
            f"SET idle_session_timeout = {round(self.idle_timeout * 1000)}",
            f"SET lock_timeout = {round(self.wait_slice * 1000)}",
        )


# What a standby's attempt found (built in the session's thread).


@dataclass(frozen=True)
class _Waiting:
    epoch: Optional[int]
    holder: Optional[str]
    age: Optional[float]
    taken_at: Optional[float]


@dataclass(frozen=True)
class _Grace:
    delay: float  # the holder's lease may still run after a restart of the server


@dataclass(frozen=True)
class _Took:
    epoch: int
    taken_at: float
    sent_at: float  # clock time the takeover was sent: the lease counts from it


class _Renewal(enum.Enum):
    LOCK_BUSY = "lock-busy"  # a new session could not take the lock back (yet)
    SUPERSEDED = "superseded"


_LEASE_ROW = (
    "SELECT l.epoch, l.holder, extract(epoch FROM now() - l.renewed_at)::float8, "
    "pg_postmaster_start_time() > l.renewed_at, extract(epoch FROM c.taken_at)::float8 "
    "FROM cluster_lease l, cluster_leader c WHERE l.id = 1 AND c.id = 1"
)


class Leadership:
    """
    One member's side of the election.  C{became_active(epoch)} and
    C{lost_leadership(reason)} are called on the reactor thread; the
    second must stop everything that commands gateways.
    """

    log = Logger()

    def __init__(
        self, clock: IReactorTime, reactor: Any, dsn: str, name: str, settings: LeaseSettings = LeaseSettings(),
        became_active: Optional[Callable[[int], None]] = None,
        lost_leadership: Optional[Callable[[LossReason], None]] = None,
    ) -> None:
        self._clock = clock
        self.name = name
        self.settings = settings
        self.became_active = became_active
        self.lost_leadership = lost_leadership
        self.session = Session(reactor, dsn, f"leadership-{name}", settings.session_settings(), on_connect=ensure_schema)
        self.role = Role.STOPPED
        self.epoch: Optional[int] = None
        self.holder: Optional[str] = None
        self.last_takeover: Optional[float] = None
        self.takeovers = 0
        self._observed_age: Optional[float] = None
        self._lease_start = 0.0
        self._locked: Optional[psycopg.Connection[Any]] = None  # touched in the session's thread only
        self._beat_timer: Optional[IDelayedCall] = None
        self._fence_timer: Optional[IDelayedCall] = None
        self._wait_timer: Optional[IDelayedCall] = None
        self._renewing = False
        self._stopping = False
        self.counters = {"attempts": 0, "renewals": 0, "renewal_failures": 0, "database_failures": 0}

    # -- the face ------------------------------------------------------------------

    def start(self) -> None:
        """Join the cluster as a standby; become active when the lock is free."""
        if self.role is not Role.STOPPED or self._stopping:
            raise RuntimeError("a leadership starts once")
        self.role = Role.STANDBY
        self._attempt()

    @property
    def lease_age(self) -> Optional[float]:
        """Seconds since the active's last renewal (our own when active; as last seen on a standby)."""
        if self.role is Role.ACTIVE:
            return self._clock.seconds() - self._lease_start
        return self._observed_age

    def holds_lease(self) -> bool:
        """
        True while this member is active and its lease runs.  Call it
        before commanding a gateway: a lease found expired fences now
        (L{lost_leadership}) rather than when its timer runs.
        """
        if self.role is not Role.ACTIVE:
            return False
        if self._clock.seconds() - self._lease_start < self.settings.lease:
            return True
        self._lose(LossReason.LEASE_EXPIRED)
        return False

    def fence(self, reason: LossReason, epoch: Optional[int] = None) -> None:
        """Stop being active (if so, and if C{epoch} is None or ours): the store was refused, say."""
        if self.role is Role.ACTIVE and (epoch is None or epoch == self.epoch):
            self._lose(reason)

    def view(self) -> ClusterView:
        return ClusterView(
            self.name, self.role, self.epoch, self.holder, self.lease_age, self.last_takeover, self.takeovers
        )

    def stop(self) -> Deferred[None]:
        """Leave the cluster: an active hands over at once (its lease row says it left)."""
        if self._stopping:
            return succeed(None)
        self._stopping = True
        was_active = self.role is Role.ACTIVE
        epoch = self.epoch
        self._cancel_timers()
        self.role = Role.STOPPED
        d: Deferred[Any] = succeed(None)
        if was_active:
            if self.lost_leadership is not None:
                self.lost_leadership(LossReason.STOPPED)
            d = self.session.run(lambda connection: self._resign(connection, epoch))
            d.addErrback(lambda f: self.log.warn("could not hand over: {error}", error=f.value))
        return d.addBoth(lambda _: self.session.close())

    # -- standing by ------------------------------------------------------------------

    def _attempt(self) -> None:
        self._wait_timer = None
        if self._stopping or self.role is not Role.STANDBY:
            return
        self.counters["attempts"] += 1
        self.session.run(self._try_take).addCallbacks(self._attempted, self._attempt_failed)

    def _try_take(self, connection: psycopg.Connection[Any]) -> Union[_Waiting, _Grace, _Took]:
        """In the session's thread: wait a slice for the lock; if it comes, take over."""
        try:
            connection.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        except psycopg.errors.LockNotAvailable:
            epoch, holder, age, _, taken_at = connection.execute(_LEASE_ROW).fetchone() or (None,) * 5
            return _Waiting(epoch, holder, age, taken_at)
        epoch, holder, age, restarted, _ = connection.execute(_LEASE_ROW).fetchone() or (None,) * 5
        if holder not in (None, self.name) and restarted and age is not None and age < self.settings.idle_timeout:
            # The server restarted since the holder's last renewal: it may be
            # alive, unfenced, and about to take its lock back.
            connection.execute("SELECT pg_advisory_unlock_all()")
            return _Grace(self.settings.idle_timeout - age)
        sent_at = self._clock.seconds()
        try:
            with connection.transaction():
                row = connection.execute(
                    "UPDATE cluster_leader SET epoch = epoch + 1, holder = %s, taken_at = now() WHERE id = 1 "
                    "RETURNING epoch, extract(epoch FROM taken_at)::float8", (self.name,),
                ).fetchone()
                assert row is not None
                connection.execute(
                    "UPDATE cluster_lease SET epoch = %s, holder = %s, renewed_at = now() WHERE id = 1",
                    (row[0], self.name),
                )
        except psycopg.errors.LockNotAvailable:
            # A frozen active's write holds the epoch row; its session ends
            # within idle_in_transaction_session_timeout.
            connection.execute("SELECT pg_advisory_unlock_all()")
            return _Waiting(epoch, holder, age, None)
        self._locked = connection
        return _Took(int(row[0]), float(row[1]), sent_at)

    def _attempted(self, result: Union[_Waiting, _Grace, _Took]) -> None:
        if isinstance(result, _Took):
            self._took(result)
        elif isinstance(result, _Grace):
            self._wait_timer = self._clock.callLater(result.delay, self._attempt)
        else:
            if result.epoch is not None:
                self.epoch, self.holder, self._observed_age = result.epoch, result.holder, result.age
                self.last_takeover = result.taken_at if result.taken_at is not None else self.last_takeover
            self._attempt()

    def _attempt_failed(self, failure: Failure) -> None:
        self.counters["database_failures"] += 1
        if is_transient(failure.value):
            self.log.info("{name}: database unavailable ({error})", name=self.name, error=str(failure.value).strip())
        else:
            self.log.failure("{name}: standing by failed", failure, name=self.name)
        if not self._stopping and self.role is Role.STANDBY:
            self._wait_timer = self._clock.callLater(self.settings.retry, self._attempt)

    def _took(self, took: _Took) -> None:
        if self._stopping:
            # stop() came while we were taking over: the session is being
            # closed behind this, which frees the lock; the next active
            # sees our lease run out.
            return
        self.role = Role.ACTIVE
        self.epoch = took.epoch
        self.holder = self.name
        self.last_takeover = took.taken_at
        self.takeovers += 1
        self._lease_start = took.sent_at
        self._observed_age = None
        self.log.info("{name} is active, epoch {epoch}", name=self.name, epoch=took.epoch)
        self._beat_timer = self._clock.callLater(self.settings.heartbeat, self._beat)
        self._arm_fence()
        if self.became_active is not None:
            self.became_active(took.epoch)

    # -- being active ------------------------------------------------------------------

    def _arm_fence(self) -> None:
        if self._fence_timer is not None and self._fence_timer.active():
            self._fence_timer.cancel()
        due = self._lease_start + self.settings.lease - self._clock.seconds()
        self._fence_timer = self._clock.callLater(max(due, 0.0), self.holds_lease)

    def _beat(self) -> None:
        self._beat_timer = self._clock.callLater(self.settings.heartbeat, self._beat)
        if self._renewing:  # the last renewal is still out: do not queue another
            return
        self._renewing = True
        epoch = self.epoch
        assert epoch is not None
        # Run once more on a new connection if the old one is found dead (a
        # restart of the server): the renewal takes the lock back at once.
        d = self.session.run(lambda connection: self._renew(connection, epoch), retry_stale=True)
        d.addCallbacks(self._renewed, self._renew_failed, callbackArgs=(epoch,), errbackArgs=(epoch,))

    def _renew(self, connection: psycopg.Connection[Any], epoch: int) -> Union[float, _Renewal]:
        """In the session's thread: renew the lease; the clock time it was sent, or why not."""
        sent_at = self._clock.seconds()
        if connection is not self._locked:
            # A new session (the server restarted, or ended ours): the lock
            # went with the old one.  Take it back if nobody else has.
            [got] = connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone() or (False,)
            if not got:
                row = connection.execute("SELECT epoch FROM cluster_leader WHERE id = 1").fetchone()
                return _Renewal.SUPERSEDED if row is None or row[0] != epoch else _Renewal.LOCK_BUSY
            self._locked = connection
        renewed = connection.execute(
            "UPDATE cluster_lease SET renewed_at = now() WHERE id = 1 AND epoch = %s AND holder = %s",
            (epoch, self.name),
        ).rowcount
        if renewed != 1:
            connection.execute("SELECT pg_advisory_unlock_all()")
            self._locked = None
            return _Renewal.SUPERSEDED
        return sent_at

    def _renewed(self, result: Union[float, _Renewal], epoch: int) -> None:
        self._renewing = False
        if self.role is not Role.ACTIVE or self.epoch != epoch:
            return  # fenced while it was out
        if result is _Renewal.SUPERSEDED:
            self._lose(LossReason.SUPERSEDED)
        elif isinstance(result, float):
            self.counters["renewals"] += 1
            if result > self._lease_start:
                self._lease_start = result
                self._arm_fence()
        else:
            self.counters["renewal_failures"] += 1

    def _renew_failed(self, failure: Failure, epoch: int) -> None:
        self._renewing = False
        self.counters["renewal_failures"] += 1
        if not is_transient(failure.value):
            self.log.failure("{name}: renewing the lease failed", failure, name=self.name)
        # The fence timer decides: the lease may still be renewed in time.

    def _lose(self, reason: LossReason) -> None:
        self.log.warn("{name} is no longer active (epoch {epoch}): {reason}",
                      name=self.name, epoch=self.epoch, reason=reason.value)
        self._cancel_timers()
        self.role = Role.STANDBY
        if self.lost_leadership is not None:
            self.lost_leadership(reason)
        if self._stopping:
            return

        def unlock(connection: psycopg.Connection[Any]) -> None:
            self._locked = None
            connection.execute("SELECT pg_advisory_unlock_all()")

        # Then stand by again (on a new session if this one is gone).
        self.session.run(unlock).addErrback(lambda _: None).addCallback(lambda _: self._attempt())

    def _resign(self, connection: psycopg.Connection[Any], epoch: Optional[int]) -> None:
        """In the session's thread: say we left, so that a standby need not wait out our lease."""
        if connection is self._locked:
            connection.execute(
                "UPDATE cluster_lease SET holder = NULL WHERE id = 1 AND epoch = %s AND holder = %s",
                (epoch, self.name),
            )
        connection.execute("SELECT pg_advisory_unlock_all()")
        self._locked = None

    def _cancel_timers(self) -> None:
        for timer in (self._beat_timer, self._fence_timer, self._wait_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._beat_timer = self._fence_timer = self._wait_timer = None
