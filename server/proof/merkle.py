"""RFC 6962 / RFC 9162 Merkle tree hashing, audit paths and consistency proofs, and their verification.

Hashing: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right). The tree over n leaves splits at
k, the largest power of two below n. Subtree hashes come from a `NodeSource`: any perfect subtree (2^L leaves
starting at a multiple of 2^L) is one stored node, so a path or a proof costs O(log n) node reads, fetched in one
batch (`plan` first collects which nodes are needed). Verification needs nothing but hashlib.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

NodeKey = tuple[int, int]  # (level, index): leaves [index * 2**level, (index + 1) * 2**level)
NodeSource = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def perfect_subtree_hash(leaves: list[bytes]) -> bytes:
    """The hash of a perfect subtree from its leaf hashes (a power of two of them), pair by pair."""
    level = leaves
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(node: NodeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) from stored perfect-subtree nodes."""
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        return node(size.bit_length() - 1, start // size)
    k = split(size)
    return node_hash(subtree_hash(node, start, start + k), subtree_hash(node, start + k, end))


def root(node: NodeSource, size: int) -> bytes:
    if size == 0:
        return hashlib.sha256(b"").digest()
    return subtree_hash(node, 0, size)


def inclusion_path(node: NodeSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[0:n])."""
    return inclusion_paths(node, [index], size)[index]


def inclusion_paths(node: NodeSource, indexes: Iterable[int], size: int) -> dict[int, list[bytes]]:
    """PATH(m, D[0:size]) for each m, sharing the subtree hashes the paths have in common (those along the right
    edge of a tree that is not a power of two are hashed from stored nodes, not read: once, not once per path)."""
    memo: dict[tuple[int, int], bytes] = {}

    def sibling(start: int, end: int) -> bytes:
        found = memo.get((start, end))
        if found is None:
            found = memo[(start, end)] = subtree_hash(node, start, end)
        return found

    paths: dict[int, list[bytes]] = {}
    for index in indexes:
        path: list[bytes] = []  # from the root down; RFC order is leaf up
        m, start, end = index, 0, size
        while end - start > 1:
            k = split(end - start)
            if m < k:
                path.append(sibling(start + k, end))
                end = start + k
            else:
                path.append(sibling(start, start + k))
                m -= k
                start += k
        path.reverse()
        paths[index] = path
    return paths


def consistency_proof(node: NodeSource, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(m, D[0:n])."""
    if old_size == 0 or old_size == new_size:
        return []
    return _subproof(node, old_size, 0, new_size, True)


def _subproof(node: NodeSource, m: int, start: int, end: int, complete: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if complete else [subtree_hash(node, start, end)]
    k = split(n)
    if m <= k:
        return [*_subproof(node, m, start, start + k, complete), subtree_hash(node, start + k, end)]
    return [*_subproof(node, m - k, start + k, end, False), subtree_hash(node, start, start + k)]


def plan(work: Callable[[NodeSource], object]) -> set[NodeKey]:
    """The stored nodes `work` reads: run it once against a recorder (hashes are placeholders)."""
    needed: set[NodeKey] = set()

    def record(level: int, index: int) -> bytes:
        needed.add((level, index))
        return b"\x00" * 32

    work(record)
    return needed


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], expected_root: bytes) -> bool:
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2."""
    if old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
