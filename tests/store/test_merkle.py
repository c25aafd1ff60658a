"""
Tests for L{disperse.store.merkle}: equal record sets give equal trees in
any write order, any difference is seen and narrowed by the walk to exactly
the leaves of the differing keys, and the digests stay what the wire
contract says.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from disperse.store import Record, Store
from disperse.store.merkle import (
    DIGEST_SIZE,
    DigestQuery,
    Digests,
    MerkleTree,
    MerkleWalk,
    blobDigest,
    entryDigest,
    keysByLeaf,
    leafHash,
    reconcile,
)

# Small trees put several keys in a leaf and exercise every level; the
# default shape is what production uses.
SHAPES = [(1, 2), (2, 4), (3, 2), (2, 16)]

keyNames = st.text(min_size=1, max_size=6)
shapes = st.sampled_from(SHAPES)
records = st.builds(
    Record,
    # Computed from the value (Hypothesis fills every field it is not given).
    contentHash=st.none(),
    value=st.binary(max_size=8),
    expiresAtMs=st.integers(0, 2**40),
    timestamp=st.integers(1, 2**63 - 1),
    nodeId=st.integers(0, 2**32 - 1),
    tombstone=st.booleans(),
    binary=st.booleans(),
)
stores = st.dictionaries(keyNames, records, max_size=40)


def treeOf(contents: dict[str, Record], shape: tuple[int, int]) -> MerkleTree:
    return MerkleTree.fromRecords(contents.items(), *shape)


def allLevels(tree: MerkleTree) -> list[list[bytes]]:
    return [tree.level(n) for n in range(tree.depth + 1)]


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    writes=st.lists(st.tuples(keyNames, records), max_size=40),
    seed=st.integers(),
)
def test_sameRecordsAnyOrderSameTree(
    shape: tuple[int, int], writes: list[tuple[str, Record]], seed: int
) -> None:
    """
    Two replicas applying the same writes in different orders, each keeping
    the last writer by precedence as the store does and telling the tree of
    every change, end with identical trees at every level.
    """
    shuffled = list(writes)
    random.Random(seed).shuffle(shuffled)
    trees = []
    for order in (writes, shuffled):
        tree = MerkleTree(*shape)
        kept: dict[str, Record] = {}
        for key, record in order:
            current = kept.get(key)
            if current is None or record.precedence > current.precedence:
                tree.updateRecords(key, current, record)
                kept[key] = record
        trees.append(tree)
        assert tree.entries == len(kept)
        assert allLevels(tree) == allLevels(treeOf(kept, shape))
    assert allLevels(trees[0]) == allLevels(trees[1])


def mutate(record: Record, how: str) -> Record:
    if how == "older":
        return record._replace(timestamp=record.timestamp - 1)
    if how == "tombstone":
        return record._replace(tombstone=not record.tombstone, value=b"")
    if how == "expiry":
        return record._replace(expiresAtMs=record.expiresAtMs + 1)
    if how == "writer":
        return record._replace(nodeId=record.nodeId ^ 1)
    assert how == "value"
    return record._replace(value=record.value + b"!")


@settings(max_examples=80, deadline=None)
@given(
    shape=shapes,
    base=stores,
    changes=st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.sampled_from(
                ["missing", "extra", "older", "tombstone", "expiry", "writer", "value"]
            ),
        ),
        max_size=6,
    ),
    extra=records,
    opener=st.booleans(),
)
def test_differencesFoundExactly(
    shape: tuple[int, int],
    base: dict[str, Record],
    changes: list[tuple[int, str]],
    extra: Record,
    opener: bool,
) -> None:
    """
    Whatever differs between two replicas (a key missing on one side, an
    older version, a tombstone against a value, another expiry, writer or
    value), the roots differ and the walk names exactly the leaves that
    hold the differing keys, from either side; when nothing differs it
    stops after the root.
    """
    mine = dict(base)
    theirs = dict(base)
    differing: set[str] = set()
    keys = sorted(base)
    for pick, how in changes:
        if how == "extra":
            key = f"extra-{pick}"
            theirs[key] = extra
        elif not keys:
            continue
        else:
            key = keys[pick % len(keys)]
            if key in differing:
                continue
            if how == "missing":
                del theirs[key]
            else:
                theirs[key] = mutate(base[key], how)
        differing.add(key)
    a, b = treeOf(mine, shape), treeOf(theirs, shape)
    expected = sorted({a.leafOf(key) for key in differing})
    assert (a.root() != b.root()) == bool(differing)
    first, second = (a, b) if opener else (b, a)
    found = reconcile(first, second)
    assert found.leaves == expected
    if not differing:
        assert found.roundTrips == 1
    byLeaf = keysByLeaf(a, found.leaves, set(mine) | set(theirs))
    assert {key for group in byLeaf.values() for key in group} >= differing


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    base=stores,
    key=keyNames,
    records=st.lists(st.one_of(st.none(), records), min_size=1, max_size=5),
)
def test_updateThenRevert(
    shape: tuple[int, int],
    base: dict[str, Record],
    key: str,
    records: list[Record | None],
) -> None:
    """
    Changing one key through any sequence of records (None: no entry) and
    back to where it started restores every digest and the entry count.
    """
    tree = treeOf(base, shape)
    before = allLevels(tree), tree.entries
    start = current = base.get(key)
    for record in [*records, start]:
        tree.updateRecords(key, current, record)
        current = record
        tree.root()  # read in between, so the lazy sums are exercised
    assert (allLevels(tree), tree.entries) == before


@given(key=keyNames, record=records)
def test_digestsAgree(key: str, record: Record) -> None:
    """
    The digest of a record and of its encoding are the same, and the update
    paths from digests, blobs and records are interchangeable.
    """
    assert entryDigest(key, record) == blobDigest(key, record.encode())
    trees = [MerkleTree(2, 4) for _ in range(3)]
    trees[0].update(key, None, entryDigest(key, record))
    trees[1].updateBlobs(key, None, record.encode())
    trees[2].updateRecords(key, None, record)
    assert len({tree.root() for tree in trees}) == 1
    leaf = trees[0].leafOf(key)
    assert leaf == leafHash(key) >> (64 - 4)
    assert trees[0].digest(2, leaf) == trees[0].root()


def test_keyAndRecordBoundary() -> None:
    """
    Moving bytes between the value and the key changes the digest: the
    input names where one ends.
    """
    record = Record(b"ab", 0, 1, 2)
    assert entryDigest("c", record) != entryDigest("bc", record._replace(value=b"a"))


def test_goldenDigests() -> None:
    """
    Digests are compared across nodes and versions: these must never change
    without a protocol version bump. (They last changed when the record
    header took the value's content hash: see docs/operations.md on
    upgrading across that change.)
    """
    record = Record(b"value", 1_700_000_000_000, 123456789 << 16, 7)
    assert entryDigest("key", record) == 0x48B10209D03DC986
    assert leafHash("key") == 0x361B2B6E7E56D44E
    tree = MerkleTree()
    tree.updateRecords("key", None, record)
    assert tree.root() == (0x48B10209D03DC986).to_bytes(8, "big")
    assert tree.leafOf("key") == 0x36


def test_emptyTreesAndCounts() -> None:
    tree = MerkleTree()
    assert tree.leafCount == 256
    assert tree.root() == bytes(DIGEST_SIZE)
    assert tree.level(1) == [bytes(DIGEST_SIZE)] * 16
    assert reconcile(tree, MerkleTree()).leaves == []
    tree.update("k", None, None)
    assert tree.entries == 0
    tree.updateBlobs("k", b"same", b"same")
    assert tree.root() == bytes(DIGEST_SIZE)


def test_fromStore() -> None:
    """
    A tree fed every write of a store as it happens equals one built from
    the store's records afterwards.
    """
    clock = Clock()
    clock.advance(1_700_000_000)
    store = Store(clock, nodeId=3)
    tree = MerkleTree(2, 4)
    for i in range(50):
        key = f"k{i % 17}"
        old = store.record(key)
        if i % 5 == 4:
            store.delete(key)
        else:
            store.put(key, b"v%d" % i, ttlMs=i * 1000)
        tree.updateRecords(key, old, store.record(key))
    assert tree.root() == MerkleTree.fromRecords(store.records(), 2, 4).root()
    assert tree.entries == 17


def test_roundsFollowTheTree() -> None:
    """
    One differing key costs one round trip per level below the root and the
    digests of one node's children per round.
    """
    a = MerkleTree(3, 4)
    b = MerkleTree(3, 4)
    for i in range(100):
        a.updateRecords(f"k{i}", None, Record(b"x", 0, i, 1))
        b.updateRecords(f"k{i}", None, Record(b"x", 0, i, 1))
    b.updateRecords("k5", Record(b"x", 0, 5, 1), Record(b"y", 0, 6, 1))
    found = reconcile(a, b)
    assert found.leaves == [a.leafOf("k5")]
    assert found.roundTrips == 4
    assert found.digests == 1 + 3 * 4
    asked = DigestQuery(1, (0, 1, 2, 3))
    assert a.compare(asked, b.digests(1, range(4))) == [a.leafOf("k5") // 16]


def test_walkAsksWhatTheWireCarries() -> None:
    """
    The questions of a walk are what a peer's digest requests carry: the
    root, then every child of each differing node, ascending; the leaves
    go out in batches of the size asked for.
    """
    a = MerkleTree(2, 4)
    b = MerkleTree(2, 4)
    keys = [f"k{i}" for i in range(40)]
    # Three keys in three distinct leaves are missing on one side.
    missing: dict[int, str] = {}
    for key in keys:
        a.updateRecords(key, None, Record(b"x", 0, 1, 1))
        if len(missing) < 3:
            missing.setdefault(a.leafOf(key), key)
    differing = sorted(missing)
    for key in set(keys) - set(missing.values()):
        b.updateRecords(key, None, Record(b"x", 0, 1, 1))
    walk = MerkleWalk(a)
    asked = []
    while (question := walk.question) is not None:
        asked.append(question)
        walk.answer(b.digests(question.level, question.nodes))
    parents = sorted({leaf // 4 for leaf in differing})
    assert asked == [
        DigestQuery(0, (0,)),
        DigestQuery(1, (0, 1, 2, 3)),
        DigestQuery(2, tuple(c for p in parents for c in range(4 * p, 4 * p + 4))),
    ]
    assert walk.leaves == differing
    assert walk.roundTrips == 3
    assert walk.leafBatches(2) == [differing[:2], differing[2:]]
    same = MerkleWalk(a)
    assert same.answer(a.digests(0, [0])) == []
    assert (same.question, same.leaves, same.leafBatches(32)) == (None, [], [])


def test_rejectsBadInput() -> None:
    """
    Questions and answers come from the network: questions about levels or
    nodes outside the tree are refused, so are answers about other nodes
    than asked or with digests of the wrong size, and shapes the tree
    cannot take.
    """
    tree = MerkleTree(2, 4)
    root = DigestQuery(0, (0,))
    level1 = DigestQuery(1, (0, 1, 2, 3))
    digest = bytes(8)
    for asked, answer in [
        (root, Digests(1, {0: digest})),
        (root, Digests(0, {})),
        (root, Digests(0, {0: digest, 1: digest})),
        (root, Digests(0, {1: digest})),
        (root, Digests(0, {0: bytes(7)})),
        (level1, Digests(1, {0: digest, 1: digest, 2: digest, 4: digest})),
        (level1, Digests(1, {0: digest, 1: digest, 2: digest})),
        (DigestQuery(3, (0,)), Digests(3, {0: digest})),
        (DigestQuery(-1, (0,)), Digests(-1, {0: digest})),
    ]:
        with pytest.raises(ValueError):
            tree.compare(asked, answer)
        if asked == root:
            with pytest.raises(ValueError):
                MerkleWalk(tree).answer(answer)
    with pytest.raises(ValueError):
        tree.digests(3, [0])
    with pytest.raises(ValueError):
        tree.digests(1, [4])
    with pytest.raises(ValueError):
        tree.children(2, 0)
    with pytest.raises(ValueError):
        reconcile(tree, MerkleTree(2, 8))
    # A walk that is over takes no more answers.
    walk = MerkleWalk(tree)
    walk.answer(tree.digests(0, [0]))
    with pytest.raises(ValueError):
        walk.answer(tree.digests(0, [0]))
    for depth, fanout in [(0, 16), (2, 3), (2, 1), (7, 16)]:
        with pytest.raises(ValueError):
            MerkleTree(depth, fanout)
