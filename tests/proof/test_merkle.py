"""The transparency log's Merkle tree against an independent RFC 6962 implementation, sizes 1..2,000."""

from __future__ import annotations

import random
from typing import Any

from server.proof import merkle
from server.proof.log import STORED_FROM_LEVEL, hash_batch
from tests import independent


def _stored_nodes(leaves: list[bytes]) -> merkle.NodeSource:
    """Perfect-subtree nodes, as the log stores them, built the log's way (appending leaf by leaf)."""
    nodes: dict[tuple[int, int], bytes] = {}
    frontier: dict[int, bytes] = {}
    for position, data in enumerate(leaves):
        current, level, index = merkle.leaf_hash(data), 0, position
        nodes[(0, index)] = current
        while index & 1:
            current = merkle.node_hash(frontier[level], current)
            level, index = level + 1, index >> 1
            nodes[(level, index)] = current
        frontier[level] = current
    return lambda level, index: nodes[(level, index)]


def test_roots_paths_and_consistency_match_the_rfc_for_random_sizes() -> None:
    rng = random.Random(6962)
    sizes = [*range(1, 65), *rng.sample(range(65, 2001), 40), 2000]
    for size in sizes:
        leaves = [rng.randbytes(32) for _ in range(size)]
        node = _stored_nodes(leaves)
        root = merkle.root(node, size)
        assert root == independent.mth(leaves), size
        for m in rng.sample(range(size), min(size, 5)):
            audit = merkle.inclusion_path(node, m, size)
            assert audit == independent.path(m, leaves), (size, m)
            assert merkle.verify_inclusion(merkle.leaf_hash(leaves[m]), m, size, audit, root)
            if audit:
                forged = list(audit)
                forged[rng.randrange(len(forged))] = rng.randbytes(32)
                assert not merkle.verify_inclusion(merkle.leaf_hash(leaves[m]), m, size, forged, root)
            assert not merkle.verify_inclusion(merkle.leaf_hash(leaves[m]), (m + 1) % size, size, audit, root) or (
                size == 1
            )
        many = rng.sample(range(size), min(size, 12))  # one call, shared subtree hashes: the same paths
        assert merkle.inclusion_paths(node, many, size) == {m: independent.path(m, leaves) for m in many}, size
        for old in rng.sample(range(1, size + 1), min(size, 4)):
            consistency = merkle.consistency_proof(node, old, size)
            assert consistency == independent.proof(old, leaves), (old, size)
            old_root = independent.mth(leaves[:old])
            assert merkle.verify_consistency(old, size, old_root, root, consistency)
            if old < size:
                assert not merkle.verify_consistency(old, size, rng.randbytes(32), root, consistency)


def test_the_sequencer_batches_give_the_nodes_of_the_stored_tree() -> None:
    """`hash_batch` (the sequencer's inlined hashing) over batches of any size: the same leaves and nodes as above."""
    rng = random.Random(9162)
    leaves = [rng.randbytes(32) for _ in range(777)]
    node = _stored_nodes(leaves)
    events: list[dict[str, Any]] = [
        {"id": i + 1, "event_id": f"{rng.getrandbits(128):032x}", "event_hash": leaf.hex()}
        for i, leaf in enumerate(leaves)
    ]
    frontier = [b""] * 64
    entries: list[tuple[Any, int, str]] = []
    nodes: list[tuple[int, int, str]] = []
    start = 0
    while start < len(events):
        end = min(len(events), start + rng.choice([1, 2, 3, 7, 64, 100]))
        batch_entries, batch_nodes = hash_batch(start, events[start:end], frontier)
        # insert order: by event id (positions say the queue order)
        assert [e[0] for e in batch_entries] == sorted(e["event_id"] for e in events[start:end])
        assert [n[:2] for n in batch_nodes] == sorted(n[:2] for n in batch_nodes)  # by level, then index
        entries += batch_entries
        nodes += batch_nodes
        start = end
    by_event = {event["event_id"]: position for position, event in enumerate(events)}
    assert sorted((position, by_event[event_id], leaf) for event_id, position, leaf in entries) == [
        (p, p, node(0, p).hex()) for p in range(len(events))
    ]
    assert {(level, index): value for level, index, value in nodes} == {
        (level, index): node(level, index).hex()
        for level in range(STORED_FROM_LEVEL, 10)
        for index in range(len(leaves) >> level)
    }
