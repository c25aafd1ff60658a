"""
Merkle trees for anti-entropy: a digest of one partition's records on one
replica, kept up to date on every write, that two replicas compare level by
level to find the few leaves (ranges of key hashes) where they differ.

Shape: a tree of C{depth} levels below the root, each node with C{fanout}
children, C{fanout ** depth} leaves. A key belongs to one leaf, chosen by a
hash of the key alone (L{leafOf}); an entry's digest is a hash of the key
and the whole record (L{entryDigest}, L{blobDigest}).

Every node's digest is the sum, modulo 2**64, of the digests of all entries
below it (a multiset hash). Addition is order-independent and invertible, so
an insert, overwrite or delete is one addition at the leaf (new digest minus
old), and two replicas holding the same records have the same digests
whatever order the writes arrived in. Addition rather than XOR because a
sum does not cancel an entry counted twice, so a caller that forgets a
removal gets a visible difference instead of a silent one. Inner nodes are
recomputed lazily: a write only marks the leaf's parent dirty, and reading a
digest first re-sums the dirty nodes (C{fanout} additions each) level by
level up to the root. Hashing inner nodes over their children's digests, as
a classic Merkle tree does, would cost a hash per node and buy nothing here:
the sums compare with the same 2**-64 chance of a false match. Neither
xxh3 nor a sum resists an adversary: a client choosing keys and values could
craft entries whose digests cancel, hiding a divergence until the next write
to that leaf, which a cache can live with.

The tree does not remember which keys it holds: a set of keys per leaf
would cost 40 to 100 bytes per key, by keys per leaf (C{bench/merkle}),
a quarter to over half of what the store spends per entry, for a list
needed only while a repair runs. The caller enumerates the keys of the
differing leaves itself (L{keysByLeaf}, L{leafHash}), one hash per key: the
store keeps its entries in one dictionary per partition, so that is a walk
over one partition (L{disperse.store.Store.partitionRecords}).

The store keeps one tree per partition, of the shape
L{disperse.store.store.TREE_DEPTH} and C{TREE_FANOUT}, and feeds it from
the two places an entry changes (L{MerkleTree.updateEncoded}). A tree
counts an entry until the store removes it, so an expired entry not swept
yet still counts: two replicas can differ for a second or two over it, and
the exchange that follows finds nothing to repair (expired records are
absent to every reader). Evicted entries are removed, so a full replica's
trees differ from its peers' until they evict the same keys; repairs do
not evict to take such keys back (L{disperse.store.Store.merge}).

Exchange over the network, in rounds (see L{reconcile} for the loop): one
side opens with its digests of one level (L{MerkleTree.opening}); the other
compares them with its own (L{MerkleTree.compare}) and answers with its
digests of the children of the nodes that differ (L{MerkleTree.expand});
and so on down, alternating sides, until the digests compared are the
leaves', whose differing indexes are the result. Both sides must use the
same C{depth} and C{fanout}, and the digest functions below are part of the
wire contract: changing a seed or the record encoding makes every replica
look different from every older one.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import xxhash

if TYPE_CHECKING:
    # Only for annotations: the store imports this module to keep its trees.
    from disperse.store.store import Record

# Seeds of the two xxh3 hashes, fixed for ever: distinct from each other and
# from placement's key hash (xxh64, another seed), so that the keys of one
# partition spread over all leaves instead of sharing hash bits.
LEAF_SEED = 0x6D65_726B_6C65_6166  # "merkleaf"
ENTRY_SEED = 0x6D65_726B_656E_7472  # "merkentr"

DIGEST_SIZE = 8

_MASK = (1 << 64) - 1
_KEY_LENGTH = struct.Struct(">I").pack
_xxh3 = xxhash.xxh3_64_intdigest


def entryDigest(key: str, record: Record) -> int:
    """
    The 64-bit digest of C{record} stored under C{key}: a hash of the key
    and of every field of the record (the version, the tombstone and binary
    flags, the expiry, the value), so any two records that
    L{Record.precedence} tells apart have different digests.
    """
    return blobDigest(key, record.encode())


def blobDigest(key: str, blob: bytes) -> int:
    """
    L{entryDigest} of the record whose encoding (L{Record.encode}, the form
    the store keeps) is C{blob}, without decoding it.
    """
    encoded = key.encode()
    # The key's length last makes the input unambiguous: it tells where the
    # record ends and the key begins.
    return _xxh3(b"".join((blob, encoded, _KEY_LENGTH(len(encoded)))), ENTRY_SEED)


@dataclass(frozen=True, slots=True)
class Digests:
    """
    One round of an exchange: the sender's digests of some nodes of one
    level.

    @ivar level: 0 for the root, the tree's depth for the leaves.
    @ivar nodes: node index within the level to its L{DIGEST_SIZE}-byte
        digest.
    """

    level: int
    nodes: Mapping[int, bytes]


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """
    What a local run of the exchange (L{reconcile}) found and cost.

    @ivar leaves: the differing leaves, ascending.
    @ivar messages: messages sent, alternating between the two sides.
    @ivar digests: digests carried by all those messages together.
    """

    leaves: list[int]
    messages: int
    digests: int


class MerkleTree:
    """
    The digest tree of one partition on one replica. Feed it every change
    of the partition's records (L{update}, L{updateBlobs} or
    L{updateRecords}); read and compare it at any time.

    @ivar depth: levels below the root; the leaves are level C{depth}.
    @ivar fanout: children per inner node, a power of two.
    @ivar leafCount: C{fanout ** depth}.
    @ivar entries: how many entries the tree currently counts.
    """

    __slots__ = (
        "_bits",
        "_dirty",
        "_leafShift",
        "_leaves",
        "_levels",
        "depth",
        "entries",
        "fanout",
        "leafCount",
    )

    def __init__(self, depth: int = 2, fanout: int = 16) -> None:
        """
        The default, 256 leaves, suits partitions of a few thousand keys: a
        node holds hundreds of partitions, so a tree must stay small (3 KiB
        at this shape, 37 KiB at 4096 leaves), and a differing leaf still
        narrows a repair to a handful of keys.
        """
        if fanout < 2 or fanout & (fanout - 1):
            raise ValueError(f"fanout must be a power of two >= 2, not {fanout}")
        bits = fanout.bit_length() - 1
        if depth < 1 or depth * bits > 24:
            raise ValueError(f"depth must be >= 1 with at most 2**24 leaves: {depth}")
        self.depth = depth
        self.fanout = fanout
        self.leafCount = fanout**depth
        self.entries = 0
        self._bits = bits
        self._leafShift = 64 - depth * bits
        # Unsigned 64-bit slots: 8 bytes a node rather than a list slot and
        # an int object (about 44 bytes).
        self._levels = [array("Q", bytes(8 * fanout**n)) for n in range(depth + 1)]
        self._leaves = self._levels[depth]
        # Indexes of the nodes of level depth - 1 whose sums are out of date.
        self._dirty: set[int] = set()

    @classmethod
    def fromRecords(
        cls, records: Iterable[tuple[str, Record]], depth: int = 2, fanout: int = 16
    ) -> MerkleTree:
        """
        A tree of the given records, such as L{disperse.store.Store.records}
        yields.
        """
        tree = cls(depth, fanout)
        for key, record in records:
            tree.update(key, None, entryDigest(key, record))
        return tree

    # Writing

    def leafOf(self, key: str) -> int:
        """
        The leaf that holds C{key}: the top bits of a seeded xxh3 of its
        UTF-8 bytes.
        """
        return _xxh3(key.encode(), LEAF_SEED) >> self._leafShift

    def update(self, key: str, old: int | None, new: int | None) -> None:
        """
        Account for the entry of C{key} changing from digest C{old} to
        C{new}; C{None} for no entry (an insert, a removal). O(1).
        """
        self.updateLeaf(self.leafOf(key), old, new)

    def updateLeaf(self, leaf: int, old: int | None, new: int | None) -> None:
        """
        L{update} for a caller that already knows the key's leaf.
        """
        if old is None:
            if new is None:
                return
            self.entries += 1
            delta = new
        elif new is None:
            self.entries -= 1
            delta = -old
        else:
            delta = new - old
        leaves = self._leaves
        leaves[leaf] = (leaves[leaf] + delta) & _MASK
        self._dirty.add(leaf >> self._bits)

    def updateBlobs(self, key: str, old: bytes | None, new: bytes | None) -> None:
        """
        L{update} from encoded records, the form the store keeps. Hashes the
        key once for the leaf and each record once: about a microsecond for
        an overwrite (C{bench/merkle}).
        """
        self.updateEncoded(key.encode(), old, new)

    def updateEncoded(
        self, encoded: bytes, old: bytes | None, new: bytes | None
    ) -> None:
        """
        L{updateBlobs} for a caller that has the key's UTF-8 bytes already:
        what L{disperse.store.Store} calls on every write, merge, expiry,
        eviction and purge (it hashed those bytes for the partition).
        """
        # updateLeaf inlined: this runs on every write of the store.
        suffix = encoded + _KEY_LENGTH(len(encoded))
        if old is None:
            if new is None:
                return
            self.entries += 1
            delta = _xxh3(new + suffix, ENTRY_SEED)
        elif new is None:
            self.entries -= 1
            delta = -_xxh3(old + suffix, ENTRY_SEED)
        elif old == new:
            return
        else:
            delta = _xxh3(new + suffix, ENTRY_SEED) - _xxh3(old + suffix, ENTRY_SEED)
        leaf = _xxh3(encoded, LEAF_SEED) >> self._leafShift
        leaves = self._leaves
        leaves[leaf] = (leaves[leaf] + delta) & _MASK
        self._dirty.add(leaf >> self._bits)

    def updateRecords(self, key: str, old: Record | None, new: Record | None) -> None:
        """
        L{update} from decoded records.
        """
        self.updateBlobs(
            key,
            None if old is None else old.encode(),
            None if new is None else new.encode(),
        )

    # Reading

    def root(self) -> bytes:
        """
        The digest of the whole tree: equal on two replicas exactly when
        they hold the same records (but for a 2**-64 chance).
        """
        return self.digest(0, 0)

    def digest(self, level: int, index: int) -> bytes:
        """
        The digest of node C{index} of C{level} (0 is the root).
        """
        self._checkNode(level, index)
        self._refresh()
        return self._levels[level][index].to_bytes(DIGEST_SIZE, "big")

    def level(self, level: int) -> list[bytes]:
        """
        The digests of every node of C{level}, by index.
        """
        self._checkNode(level, 0)
        self._refresh()
        return [value.to_bytes(DIGEST_SIZE, "big") for value in self._levels[level]]

    def children(self, level: int, index: int) -> range:
        """
        The indexes, one level down, of the children of node C{index}.
        """
        self._checkNode(level, index)
        if level == self.depth:
            raise ValueError("a leaf has no children")
        return range(index * self.fanout, (index + 1) * self.fanout)

    # Exchanging

    def opening(self, level: int = 0) -> Digests:
        """
        The first message of an exchange: every digest of C{level}. The root
        alone (level 0) is the smallest; opening one level lower saves a
        round when the trees are known to differ.
        """
        levelDigests = self.level(level)
        return Digests(level, dict(enumerate(levelDigests)))

    def compare(self, theirs: Digests) -> list[int]:
        """
        The nodes of C{theirs} whose digests differ from ours, ascending.
        When C{theirs} is at the leaf level these are the differing leaves;
        otherwise answer with L{expand} of them, or stop if there are none.

        @raise ValueError: for a level or index outside the tree or a digest
            of the wrong size (the message came from the network).
        """
        self._refresh()
        level = theirs.level
        differing = []
        for index, digest in theirs.nodes.items():
            self._checkNode(level, index)
            if len(digest) != DIGEST_SIZE:
                raise ValueError(f"digest of {len(digest)} bytes")
            if int.from_bytes(digest, "big") != self._levels[level][index]:
                differing.append(index)
        differing.sort()
        return differing

    def expand(self, level: int, nodes: Iterable[int]) -> Digests:
        """
        Our digests of the children of C{nodes} (of C{level}): the answer to
        a message whose C{nodes} differed.
        """
        if level == self.depth:
            raise ValueError("leaves have no children")
        self._refresh()
        below = self._levels[level + 1]
        out: dict[int, bytes] = {}
        for node in nodes:
            for child in self.children(level, node):
                out[child] = below[child].to_bytes(DIGEST_SIZE, "big")
        return Digests(level + 1, out)

    # Internals

    def _checkNode(self, level: int, index: int) -> None:
        if not 0 <= level <= self.depth:
            raise ValueError(f"level {level} outside 0..{self.depth}")
        if not 0 <= index < self.fanout**level:
            raise ValueError(f"node {index} outside level {level}")

    def _refresh(self) -> None:
        dirty = self._dirty
        if not dirty:
            return
        fanout = self.fanout
        bits = self._bits
        for level in range(self.depth - 1, -1, -1):
            nodes = self._levels[level]
            children = self._levels[level + 1]
            parents = set()
            for index in dirty:
                start = index * fanout
                nodes[index] = sum(children[start : start + fanout]) & _MASK
                parents.add(index >> bits)
            dirty = parents
        self._dirty.clear()


def leafHash(key: str) -> int:
    """
    The 64-bit hash whose top bits are a key's leaf in a tree of any shape
    (C{leafHash(key) >> (64 - depth * log2(fanout))}): lets a caller that
    repairs many partitions at once find every key's leaf in one pass.
    """
    return _xxh3(key.encode(), LEAF_SEED)


def keysByLeaf(
    tree: MerkleTree, leaves: Collection[int], keys: Iterable[str]
) -> dict[int, list[str]]:
    """
    The C{keys} that fall in C{leaves}, grouped by leaf: how a repair finds
    what to compare once the exchange has named the differing leaves. One
    hash per key enumerated.
    """
    wanted = set(leaves)
    out: dict[int, list[str]] = {leaf: [] for leaf in wanted}
    leafOf = tree.leafOf
    for key in keys:
        leaf = leafOf(key)
        if leaf in wanted:
            out[leaf].append(key)
    return out


def reconcile(initiator: MerkleTree, responder: MerkleTree) -> Reconciliation:
    """
    Run the exchange between two local trees as it would run over the
    network, the initiator opening with its root: what tests, benchmarks
    and simulations use, and the reference for the networked loop.
    """
    if (initiator.depth, initiator.fanout) != (responder.depth, responder.fanout):
        raise ValueError("trees of different shapes cannot be compared")
    message = initiator.opening()
    sides = (initiator, responder)
    messages, digests = 1, len(message.nodes)
    turn = 1
    while True:
        receiver = sides[turn]
        differing = receiver.compare(message)
        if not differing or message.level == receiver.depth:
            return Reconciliation(differing, messages, digests)
        message = receiver.expand(message.level, differing)
        messages += 1
        digests += len(message.nodes)
        turn = 1 - turn
