"""Mining a finite list of messages in memory: `logpipe patterns mine` and the accuracy bench."""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from logpipe.patterns.masking import mask_array
from logpipe.patterns.miner import PatternMiner


def mine(messages: Sequence[str], miner: PatternMiner | None = None) -> list[tuple[int, str]]:
    """(pattern id, template) for each message, with templates as they stand after all of them.

    Each distinct masked message is mined once, in order of first appearance, which is what the
    ingest tagger does per batch: the result is the same as mining line by line.
    """
    miner = miner or PatternMiner()
    raw = pc.dictionary_encode(pa.array(messages, type=pa.string()))
    encoded = pc.dictionary_encode(mask_array(raw.dictionary))  # each distinct message masked once
    indices = encoded.indices.take(raw.indices)
    distinct = encoded.dictionary.to_pylist()
    counts = pc.value_counts(indices).to_pylist()
    count_of = {item["values"]: item["counts"] for item in counts}
    # An empty (or null) message has no pattern: id 0, like the ingest tagger.
    ids = [miner.add(text, count_of.get(position, 1)).id if text else 0 for position, text in enumerate(distinct)]
    resolved = [miner.resolve(pattern_id) if pattern_id else 0 for pattern_id in ids]
    templates = []
    rendered: dict[int, str] = {0: ""}
    for pattern_id, text in zip(resolved, distinct):
        template = rendered.get(pattern_id)
        if template is None:
            pattern = miner.patterns.get(pattern_id)
            # A pattern evicted by the memory cap keeps the message that joined it as its text.
            template = pattern.template if pattern is not None else text
            if pattern is not None:
                rendered[pattern_id] = template
        templates.append(template)
    # Back from distinct messages to lines, in Arrow rather than a Python loop per line.
    line_ids = pa.array(resolved, type=pa.uint64()).take(indices).fill_null(0).to_pylist()
    line_templates = pa.array(templates, type=pa.string()).take(indices).fill_null("").to_pylist()
    return list(zip(line_ids, line_templates))
