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

Comparing two replicas' trees is a walk down from the root (L{MerkleWalk}):
one side asks the other for its digests of some nodes of one level (the
root first), the other answers from its tree (L{MerkleTree.digests}), and
the asker compares them with its own (L{MerkleTree.compare}) and asks next
for the children of the nodes that differ, down to the leaves; the
differing leaves are the result, and the two sides then exchange those
leaves' records. One round trip a level, and a round carries the digests
of the children of the nodes that differed. The walk does no I/O:
L{disperse.cluster.antientropy} carries its questions and answers over the
network, L{reconcile} between two local trees. Both sides must use the
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
from typing import TYPE_CHECKING, NamedTuple

import xxhash

if TYPE_CHECKING:
    # Only for annotations: the store imports this module to keep its trees.
    from disperse.store.record import Record

# Seeds of the two xxh3 hashes, fixed for ever: distinct from each other,
# and unrelated to the key's partition (its CRC16 slot), so that the keys of
# one partition spread over all leaves instead of sharing hash bits.
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
    The answer to a L{DigestQuery}: the answering side's digests of some
    nodes of one level.

    @ivar level: 0 for the root, the tree's depth for the leaves.
    @ivar nodes: node index within the level to its L{DIGEST_SIZE}-byte
        digest.
    """

    level: int
    nodes: Mapping[int, bytes]


class DigestQuery(NamedTuple):
    """
    One round of a walk (L{MerkleWalk}): the nodes of one level whose
    digests the asker wants from the other side. A named tuple: one is
    made per round trip, and a dataclass costs more to build.

    @ivar level: 0 for the root, the tree's depth for the leaves.
    @ivar nodes: node indexes within the level, ascending.
    """

    level: int
    nodes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """
    What a local run of the walk (L{reconcile}) found and cost.

    @ivar leaves: the differing leaves, ascending.
    @ivar roundTrips: questions asked and answered.
    @ivar digests: digests carried by all the answers together.
    """

    leaves: list[int]
    roundTrips: int
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

    def setLeaf(self, leaf: int, digest: int) -> bool:
        """
        Make C{digest} the digest of C{leaf}: for a caller that summed the
        digests of the leaf's entries again, because one of them changed in
        a way it could not subtract (an entry damaged in memory, whose
        digest when it was added is unknown). The count of entries is the
        caller's to keep.

        @return: whether the leaf held another digest.
        """
        digest &= _MASK
        leaves = self._leaves
        if leaves[leaf] == digest:
            return False
        leaves[leaf] = digest
        self._dirty.add(leaf >> self._bits)
        return True

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

    # Comparing

    def digests(self, level: int, nodes: Iterable[int]) -> Digests:
        """
        Our digests of C{nodes} of C{level}: the answer to the other side's
        question in a walk (L{DigestQuery}).

        @raise ValueError: for a level or node outside the tree (the
            question came from the network).
        """
        self._checkLevel(level)
        self._refresh()
        values = self._levels[level]
        width = len(values)
        out: dict[int, bytes] = {}
        for node in nodes:
            if not 0 <= node < width:
                raise ValueError(f"node {node} outside level {level}")
            out[node] = values[node].to_bytes(DIGEST_SIZE, "big")
        return Digests(level, out)

    def compare(self, asked: DigestQuery, theirs: Digests) -> list[int]:
        """
        The nodes of C{asked} whose digests in C{theirs}, the other side's
        answer to it, differ from ours, in the order C{asked} lists them.
        At the leaf level these are the differing leaves; otherwise the
        walk goes on with their children (L{MerkleWalk}).

        @raise ValueError: for an answer about other nodes than asked or
            with a digest of the wrong size (it came from the network), or
            a question about a level outside the tree.
        """
        level, nodes = asked
        answered = theirs.nodes
        if theirs.level != level or len(answered) != len(nodes):
            raise ValueError("an answer about other nodes than asked")
        self._checkLevel(level)
        self._refresh()
        ours = self._levels[level]
        differing = []
        for node in nodes:
            digest = answered.get(node)
            if digest is None:
                raise ValueError("an answer about other nodes than asked")
            if len(digest) != DIGEST_SIZE:
                raise ValueError(f"digest of {len(digest)} bytes")
            if int.from_bytes(digest, "big") != ours[node]:
                differing.append(node)
        return differing

    # Internals

    def _checkLevel(self, level: int) -> None:
        if not 0 <= level <= self.depth:
            raise ValueError(f"level {level} outside 0..{self.depth}")

    def _checkNode(self, level: int, index: int) -> None:
        self._checkLevel(level)
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


# Every walk starts by asking for the root.
_ROOT = DigestQuery(0, (0,))


class MerkleWalk:
    """
    One side's walk of an exchange: its tree compared with another
    replica's, level by level from the root, down to the leaves that differ.
    No I/O: the caller asks the other side for the digests L{question}
    names (the other side answers with L{MerkleTree.digests}), hands them
    to L{answer}, and repeats until L{question} is C{None}. L{leaves} are
    then the differing leaves, whose records the two sides exchange
    (L{leafBatches}).

    @ivar question: what to ask the other side next; C{None} once the walk
        is over.
    @ivar leaves: the differing leaves, ascending, once the walk is over.
    @ivar roundTrips: questions answered so far.
    @ivar digestsReceived: digests carried by those answers.
    """

    __slots__ = ("_tree", "digestsReceived", "leaves", "question", "roundTrips")

    def __init__(self, tree: MerkleTree) -> None:
        self._tree = tree
        self.question: DigestQuery | None = _ROOT
        self.leaves: list[int] = []
        self.roundTrips = 0
        self.digestsReceived = 0

    def answer(self, theirs: Digests) -> list[int]:
        """
        Take the other side's answer to L{question}: compare it with our
        tree, and ask next for the children of the nodes that differ, or
        end the walk at the leaves or when nothing differs.

        @return: the nodes of the level asked about that differ, ascending.
        @raise ValueError: for an answer about other nodes than asked, or
            with digests of the wrong size (it came from the network), or
            for a walk that is over.
        """
        asked = self.question
        if asked is None:
            raise ValueError("the walk is over")
        tree = self._tree
        differing = tree.compare(asked, theirs)
        level = asked.level
        self.roundTrips += 1
        self.digestsReceived += len(asked.nodes)
        if level == tree.depth:
            self.leaves = differing
            self.question = None
        elif differing:
            children = tree.children
            below = [child for node in differing for child in children(level, node)]
            self.question = DigestQuery(level + 1, tuple(below))
        else:
            self.question = None
        return differing

    def leafBatches(self, size: int) -> list[list[int]]:
        """
        The differing leaves in ascending runs of at most C{size}: the
        leaves whose records to exchange, one request each.
        """
        leaves = self.leaves
        if len(leaves) <= size:
            # Most walks: no leaf or a few.
            return [leaves] if leaves else []
        return [leaves[start : start + size] for start in range(0, len(leaves), size)]


def reconcile(initiator: MerkleTree, responder: MerkleTree) -> Reconciliation:
    """
    Run the walk of C{initiator} against C{responder}, two local trees, as
    it runs over the network: what tests, benchmarks and simulations use.
    """
    if (initiator.depth, initiator.fanout) != (responder.depth, responder.fanout):
        raise ValueError("trees of different shapes cannot be compared")
    walk = MerkleWalk(initiator)
    while (asked := walk.question) is not None:
        walk.answer(responder.digests(asked.level, asked.nodes))
    return Reconciliation(walk.leaves, walk.roundTrips, walk.digestsReceived)
