"""Python's cyclic garbage collector, tuned for services that handle records in big batches.

CPython collects its youngest generation every 700 net allocations of container objects, and
everything older when enough has survived. A Kafka poll makes one `Message` object (a container)
per record; 50,000 of them alive at once meant about 70 collections per poll, and the survivors
promoted on to the oldest generation made full collections of the whole heap: in
`bench/ingest.py` about 6 s of the ~20 s run went to the collector, all of it holding the GIL.

Records are plain data without reference cycles, so they are freed by reference counting the
moment they are dropped; the collector is only needed for the rare cycle. With the youngest
threshold at 100,000 (`LOGPIPE_GC_GEN0_THRESHOLD`), and the older ones at 1,000, collections
during a run are a handful, and a full collection every `LOGPIPE_GC_FULL_COLLECT_SECONDS` (60 s)
still frees whatever cycles pile up. `LOGPIPE_GC_GEN0_THRESHOLD=0` leaves Python's defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import AsyncIterator

log = logging.getLogger(__name__)

_OLDER_THRESHOLD = 1_000
_users = 0
_saved: tuple[int, int, int] | None = None


@contextlib.asynccontextmanager
async def tuned_gc(gen0_threshold: int, full_collect_seconds: float) -> AsyncIterator[None]:
    """Raise the collector's thresholds while the block runs (once per process, however many
    services share it) and run a full collection every `full_collect_seconds` meanwhile."""
    global _users, _saved
    if gen0_threshold <= 0:
        yield
        return
    if _users == 0:
        _saved = gc.get_threshold()
        gc.set_threshold(gen0_threshold, _OLDER_THRESHOLD, _OLDER_THRESHOLD)
    _users += 1
    collector = asyncio.create_task(_collect_every(full_collect_seconds), name="gc-full-collect")
    try:
        yield
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        _users -= 1
        if _users == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None


async def _collect_every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        found = gc.collect()
        if found:
            log.debug("full garbage collection freed %d objects in cycles", found)
