"""Process-level tuning for `python -m server serve` (and the benchmark server, which mirrors it).

The garbage collector's default thresholds run a collection every 700 net allocations; a consent check allocates
enough short-lived objects that full collections, each walking every long-lived object (models, catalog, modules),
run often enough to dominate the tail. So the objects alive after start-up are frozen out of collection and the
first-generation threshold is raised: about twice the checks a second and a far shorter p99 (bench/README.md,
"Garbage collector tuning"). Reference cycles are still collected, only less often.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Call once, after the app and its long-lived objects are built."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
