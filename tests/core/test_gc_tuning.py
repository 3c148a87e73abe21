"""The collector's thresholds while services run, and the periodic full collection."""

import asyncio
import gc

from logpipe.core.gc_tuning import tuned_gc


async def test_thresholds_are_raised_while_running_and_restored_after():
    before = gc.get_threshold()
    async with tuned_gc(100_000, 60):
        assert gc.get_threshold() == (100_000, 1_000, 1_000)
        async with tuned_gc(50_000, 60):  # a second service in the same process
            assert gc.get_threshold() == (100_000, 1_000, 1_000)
        assert gc.get_threshold() == (100_000, 1_000, 1_000)  # the first still runs
    assert gc.get_threshold() == before


async def test_zero_leaves_pythons_defaults():
    before = gc.get_threshold()
    async with tuned_gc(0, 60):
        assert gc.get_threshold() == before


async def test_cycles_are_still_freed_by_the_periodic_full_collection():
    full = []

    def count(phase, info):
        if phase == "stop" and info["generation"] == 2:
            full.append(info["collected"])

    gc.callbacks.append(count)
    try:
        async with tuned_gc(100_000, 0.05):
            for _ in range(100):
                cycle = []
                cycle.append(cycle)
            del cycle
            for _ in range(100):
                await asyncio.sleep(0.02)
                if sum(full) >= 100:
                    break
    finally:
        gc.callbacks.remove(count)
    assert sum(full) >= 100
