"""The transparency log's Merkle tree against an independent RFC 6962 implementation, sizes 1..2,000."""

from __future__ import annotations

import random

from server.proof import merkle
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
        for old in rng.sample(range(1, size + 1), min(size, 4)):
            consistency = merkle.consistency_proof(node, old, size)
            assert consistency == independent.proof(old, leaves), (old, size)
            old_root = independent.mth(leaves[:old])
            assert merkle.verify_consistency(old, size, old_root, root, consistency)
            if old < size:
                assert not merkle.verify_consistency(old, size, rng.randbytes(32), root, consistency)
