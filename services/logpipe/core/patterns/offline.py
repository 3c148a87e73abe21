"""Mining a finite list of messages in memory: `logpipe patterns mine` and the accuracy bench."""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from logpipe.core.patterns.masking import mask_array
from logpipe.core.patterns.miner import PatternMiner


def mine(messages: Sequence[str], miner: PatternMiner | None = None) -> list[tuple[int, str]]:
    """(pattern id, template) for each message, with templates as they stand after all of them.

    Each distinct masked message is mined once, in order of first appearance, which is what the
    ingest tagger does per batch: the result is the same as mining line by line.
    """
    miner = miner or PatternMiner()
    masked = mask_array(pa.array(messages, type=pa.string()))
    encoded = pc.dictionary_encode(masked)
    distinct = encoded.dictionary.to_pylist()
    counts = pc.value_counts(encoded.indices).to_pylist()
    count_of = {item["values"]: item["counts"] for item in counts}
    # An empty (or null) message has no pattern: id 0, like the ingest tagger.
    ids = [miner.add(text, count_of.get(position, 1)).id if text else 0 for position, text in enumerate(distinct)]
    out: list[tuple[int, str]] = []
    templates: dict[int, tuple[int, str]] = {}
    for index in encoded.indices.to_pylist():
        if index is None or ids[index] == 0:
            out.append((0, ""))
            continue
        pattern_id = miner.resolve(ids[index])
        found = templates.get(pattern_id)
        if found is None:
            pattern = miner.patterns.get(pattern_id)
            found = (pattern_id, pattern.template if pattern is not None else distinct[index])
            templates[pattern_id] = found
        out.append(found)
    return out
