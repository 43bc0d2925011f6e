"""
Tests for L{mgcpswitch.txid}: the unpredictable transaction-id allocator
(a keyed permutation of each block it is given) and id arithmetic.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.testing import SequentialIds
from mgcpswitch.txid import MAX_TXID, WHOLE_SPACE, TransactionIdAllocator, txid_add

KEY = bytes(range(32))


class Permutation(SynchronousTestCase):
    """Every id of a block exactly once, in an order only the key tells."""

    def test_each_id_of_a_block_once(self) -> None:
        """A block of 5,000 ids (not a power of four: cycle walking) is drawn whole, each id once."""
        for key in (KEY, None):
            allocator = TransactionIdAllocator(key=key, blocks=[range(1000, 6000)])
            ids = [allocator.allocate() for _ in range(5000)]
            self.assertEqual(sorted(ids), list(range(1000, 6000)))

    def test_blocks_in_turn(self) -> None:
        """A spent block gives way to the next; when none is left, allocation fails loudly."""
        allocator = TransactionIdAllocator(key=KEY, blocks=[range(10, 14), range(500, 501)])
        first = [allocator.allocate() for _ in range(4)]
        self.assertEqual(sorted(first), [10, 11, 12, 13])
        self.assertEqual(allocator.allocate(), 500)
        self.assertEqual(allocator.block, range(500, 501))
        self.assertRaises(RuntimeError, allocator.allocate)

    def test_bad_blocks_are_refused(self) -> None:
        """A block must lie in 1..999,999,999, step 1, not empty."""
        for block in (range(0, 5), range(MAX_TXID, MAX_TXID + 2), range(5, 5), range(1, 10, 2)):
            allocator = TransactionIdAllocator(key=KEY, blocks=[block])
            self.assertRaises(ValueError, allocator.allocate)

    def test_key_fixes_the_order(self) -> None:
        """The same key gives the same order; another key, another one."""
        def draw(key: bytes) -> list[int]:
            allocator = TransactionIdAllocator(key=key)
            return [allocator.allocate() for _ in range(50)]

        self.assertEqual(draw(KEY), draw(KEY))
        self.assertNotEqual(draw(KEY), draw(bytes(32)))

    def test_whole_space_order_is_not_a_sequence(self) -> None:
        """
        Over the whole space, 1,000 ids in a row are all distinct, within
        1..999,999,999, with no two neighbours close together: seeing some
        ids tells nothing useful about the next.
        """
        for key in (KEY, None):
            allocator = TransactionIdAllocator(key=key)
            ids = [allocator.allocate() for _ in range(1000)]
            self.assertEqual(allocator.block, WHOLE_SPACE)
            self.assertEqual(len(set(ids)), 1000)
            self.assertTrue(all(1 <= i <= MAX_TXID for i in ids))
            close = [(a, b) for a, b in zip(ids, ids[1:]) if abs(b - a) < 10_000]
            self.assertLess(len(close), 3, close)

    def test_unkeyed_allocators_differ(self) -> None:
        """Without a key each allocator (each process) has its own secret order."""
        a, b = TransactionIdAllocator(), TransactionIdAllocator()
        self.assertNotEqual([a.allocate() for _ in range(5)], [b.allocate() for _ in range(5)])

    def test_key_length(self) -> None:
        """BLAKE2b takes 16 to 64 bytes of key."""
        self.assertRaises(ValueError, TransactionIdAllocator, key=b"short")
        self.assertRaises(ValueError, TransactionIdAllocator, key=bytes(65))


class Arithmetic(SynchronousTestCase):
    def test_txid_add_wraps(self) -> None:
        """Ids wrap from 999,999,999 to 1 both ways."""
        self.assertEqual(txid_add(MAX_TXID, 1), 1)
        self.assertEqual(txid_add(1, -1), MAX_TXID)
        self.assertEqual(txid_add(5, 10), 15)

    def test_sequential_ids_for_tests_wrap(self) -> None:
        """The tests' predictable allocator counts up and wraps to 1."""
        ids = SequentialIds(MAX_TXID - 1)
        self.assertEqual([ids.allocate() for _ in range(3)], [MAX_TXID - 1, MAX_TXID, 1])
        self.assertRaises(ValueError, SequentialIds, 0)
