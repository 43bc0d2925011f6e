"""
Transaction-id blocks and CallId prefixes that no two agents share (RFC
3435 §3.2.1.2: a gateway answers a reused id from its cache), drawn from
a real PostgreSQL server; the allocator the transaction layer takes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mgcpswitch.cluster.db import Session, ensure_schema
from mgcpswitch.cluster.ids import IdBlocks, IdsExhausted, call_id_prefix
from mgcpswitch.txid import TransactionIdAllocator
from mgcpswitch.txid import MAX_TXID

from .support.postgres import PostgresCase


class Blocks(PostgresCase, TestCase):
    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()

    def blocks(self, name: str, size: int = 100_000, **options: Any) -> IdBlocks:
        session = Session(reactor, self.dsn, name, on_connect=ensure_schema)
        self.addCleanup(session.close)
        blocks = IdBlocks(self.clock, session, name, size, **options)
        self.addCleanup(blocks.stop)
        return blocks

    @inlineCallbacks
    def test_agents_get_disjoint_blocks(self) -> Any:
        """Two agents drawing in turn never get overlapping ids, and every id is a valid one."""
        a, b = self.blocks("a"), self.blocks("b")
        yield a.start()
        yield b.start()
        taken: list[range] = []
        for _ in range(5):
            for blocks in (a, b):
                taken.append(next(blocks))
                yield blocks.start()  # the reserve refilled
        ids = [txid for block in taken for txid in block]
        self.assertEqual(len(ids), 10 * 100_000)
        self.assertEqual(len(set(ids)), len(ids))
        self.assertTrue(all(1 <= txid <= MAX_TXID for txid in (min(ids), max(ids))))
        holders = self.server.query(self.dsn, "SELECT holder, count(*) FROM txid_blocks GROUP BY holder ORDER BY 1")
        self.assertEqual(holders, [("a", 7), ("b", 7)])  # five each, and a reserve of two

    @inlineCallbacks
    def test_next_never_waits(self) -> Any:
        """With the reserve spent before the database answered, next() says so at once; then it is refilled."""
        a = self.blocks("a", reserve=2)
        yield a.start()
        next(a), next(a)
        with self.assertRaises(IdsExhausted):
            next(a)
        yield a.start()
        self.assertEqual(a.in_hand, 2)

    @inlineCallbacks
    def test_the_first_agent_sets_the_block_size(self) -> Any:
        """Blocks of different sizes would overlap: a later agent follows the first one's size."""
        a, b = self.blocks("a", 1000), self.blocks("b", 5000)
        yield a.start()
        yield b.start()
        self.assertEqual((a.size, b.size), (1000, 1000))
        self.assertEqual({len(next(a)), len(next(b))}, {1000})

    @inlineCallbacks
    def test_a_block_is_not_handed_out_again_too_soon(self) -> Any:
        """
        With two blocks in the whole space, a third draw within reuse_after
        finds none, says so, and tries again later; with reuse allowed it
        cycles back to the first block.
        """
        a = self.blocks("a", 400_000_000, reserve=1)
        yield a.start()
        first = next(a)
        yield a.start()
        second = next(a)
        self.assertEqual((first.start, second.start), (1, 400_000_001))
        yield a._session.drained()
        self.assertEqual(a.in_hand, 0)
        [logged] = self.flushLoggedErrors(IdsExhausted)
        self.server.query(self.dsn, "UPDATE txid_blocks SET handed_at = handed_at - interval '1 hour'")
        self.clock.advance(a.retry)
        yield a.start()
        self.assertEqual(next(a), first)


class Allocator(SynchronousTestCase):
    def test_each_block_once_then_the_next(self) -> None:
        """
        The transaction layer's allocator draws from the cluster's blocks:
        every id of a block once (in an unpredictable order), then the next
        block; with no block left it says so.
        """
        allocator = TransactionIdAllocator(blocks=iter([range(10, 13), range(500, 502)]))
        ids = [allocator.allocate() for _ in range(5)]
        self.assertEqual(sorted(ids[:3]), [10, 11, 12])
        self.assertEqual(sorted(ids[3:]), [500, 501])
        with self.assertRaises(RuntimeError):
            allocator.allocate()

    def test_exhausted_blocks_are_reported(self) -> None:
        """An IdBlocks with no block in hand raises IdsExhausted through the allocator."""
        def empty() -> range:
            raise IdsExhausted("no block in hand")

        allocator = TransactionIdAllocator(blocks=iter(empty, None))
        with self.assertRaises(IdsExhausted):
            allocator.allocate()


class CallIds(SynchronousTestCase):
    def test_prefixes_are_fixed_width_hex(self) -> None:
        """A term's CallId prefix is 12 hex digits: no prefix and counter spell another's CallId."""
        self.assertEqual(call_id_prefix(1), "000000000001")
        self.assertEqual(call_id_prefix(0xABCDEF), "000000abcdef")
        self.assertEqual({len(call_id_prefix(e)) for e in (0, 1, 2**48 - 1)}, {12})
        with self.assertRaises(ValueError):
            call_id_prefix(2**48)
