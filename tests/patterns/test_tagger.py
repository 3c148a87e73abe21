"""The tagger against a real (embedded) ClickHouse: persistence, shared state, merges."""

import pyarrow as pa

from logpipe.patterns import PatternSettings, build_tagger
from logpipe.core.settings import CommonSettings

LINES = [
    "Invalid user admin from 10.0.0.1",
    "Invalid user oracle from 10.0.0.2",
    "Accepted password for root from 10.0.0.3 port 22 ssh2",
    "Invalid user guest from 10.0.0.4",
    "Connection closed by 10.0.0.5 [preauth]",
    "Accepted password for root from 10.0.0.6 port 2222 ssh2",
]


def tagger_for(store, **overrides):
    return build_tagger(store, CommonSettings(), PatternSettings(sync_seconds=0, **overrides))


def stored_patterns(store):
    return dict(store.query(f"SELECT pattern_id, argMax(template, updated_at) FROM {store.table('patterns')} GROUP BY pattern_id"))


def test_tag_returns_uint64_ids_per_message(clickhouse):
    tagger = tagger_for(clickhouse)
    ids = tagger.tag(pa.chunked_array([LINES[:3], [None, ""] + LINES[3:]]))
    assert ids.type == pa.uint64()
    values = ids.to_pylist()
    assert len(values) == len(LINES) + 2
    assert values[3] == 0 and values[4] == 0  # null and empty: no pattern
    # The three "Invalid user" lines are one pattern; both "Accepted" lines another.
    assert values[0] == values[1] == values[5]
    assert values[2] == values[7] and values[2] != values[0]
    assert stored_patterns(clickhouse)[values[0]] == "Invalid user <*> from <*>"


def test_state_survives_a_restart(clickhouse):
    first = tagger_for(clickhouse)
    before = first.tag(pa.array(LINES)).to_pylist()
    first.close()
    # A new process: nothing in memory, everything from the store.
    second = tagger_for(clickhouse)
    assert second.template(before[0]) == "Invalid user <*> from <*>"
    after = second.tag(pa.array(LINES + ["Invalid user postgres from 10.9.9.9"])).to_pylist()
    assert after[:len(LINES)] == before
    assert after[-1] == before[0]


def test_two_taggers_on_one_store_agree(clickhouse):
    a, b = tagger_for(clickhouse), tagger_for(clickhouse)
    ids_a = a.tag(pa.array(LINES[:3])).to_pylist()
    # a saw two user names: two patterns for now. b has never seen these lines: it learns a's
    # patterns from the store, then a third user name folds the two into one.
    ids_b = b.tag(pa.array(LINES)).to_pylist()
    assert ids_b[0] == ids_b[1] == ids_b[3] == min(ids_a[0], ids_a[1])
    assert ids_b[2] == ids_a[2]
    # Ids a handed out earlier resolve to the same patterns on both replicas...
    assert [b.resolve(i) for i in ids_a] == ids_b[:3]
    # ...and a, reading the merge from the store, now tags exactly like b.
    assert a.tag(pa.array(LINES)).to_pylist() == ids_b
    assert [a.resolve(i) for i in ids_a] == ids_b[:3]
    assert a.template(ids_b[0]) == b.template(ids_b[0]) == "Invalid user <*> from <*>"


def test_concurrent_creation_converges(clickhouse):
    # Both replicas create the "user" pattern from different first messages before syncing.
    a, b = tagger_for(clickhouse), tagger_for(clickhouse)
    first_a = a.tag(pa.array(["disk sda full"])).to_pylist()[0]
    first_b = b.tag(pa.array(["disk sdb full"])).to_pylist()[0]
    assert first_a != first_b
    # A third variant on a generalises; b picks the merge up and both agree from then on.
    merged = a.tag(pa.array(["disk sdc full"])).to_pylist()[0]
    assert merged == min(first_a, first_b)
    assert b.tag(pa.array(["disk sdd full", "disk sdb full"])).to_pylist() == [merged, merged]
    aliases = dict(clickhouse.query(f"SELECT alias_id, pattern_id FROM {clickhouse.table('pattern_aliases')}"))
    assert aliases[max(first_a, first_b)] == merged


def test_tagger_memory_is_capped(clickhouse):
    tagger = tagger_for(clickhouse, max_patterns=20, cache_size=100)
    words = ["".join(chr(97 + (i // 26 ** k) % 26) for k in range(3)) for i in range(3000)]
    # Capitalised first words are events, so each line is a pattern of its own (lower-case
    # first words before a long rest would be names, and fold).
    ids = tagger.tag(pa.array([f"{w.capitalize()} started in {i} ms" for i, w in enumerate(words)])).to_pylist()
    assert len(set(ids)) == 3000 and 0 not in ids
    assert len(tagger.miner.patterns) <= 20
    assert len(tagger._cache) <= 100
    # Evicted from memory, kept in the store: every id is still resolvable to its template.
    assert len(stored_patterns(clickhouse)) == 3000


def test_a_failed_write_is_retried_not_lost(clickhouse, monkeypatch):
    tagger = tagger_for(clickhouse)
    real_save = tagger.store.save
    calls = []

    def flaky_save(patterns, aliases):
        calls.append(len(patterns))
        if len(calls) == 1:
            raise ConnectionError("ClickHouse is restarting")
        real_save(patterns, aliases)

    monkeypatch.setattr(tagger.store, "save", flaky_save)
    first = tagger.tag(pa.array(["backup of db1 finished in 42 s"])).to_pylist()[0]
    assert first != 0 and stored_patterns(clickhouse) == {}
    # The next batch (even one with nothing new) writes what is pending.
    assert tagger.tag(pa.array(["backup of db1 finished in 7 s"])).to_pylist() == [first]
    assert stored_patterns(clickhouse) == {first: "backup of db1 finished in <*> s"}


def test_levels_and_bad_input_in_tag(clickhouse):
    tagger = tagger_for(clickhouse)
    assert tagger.tag(pa.array([], type=pa.string())).to_pylist() == []
    # Non-string columns are read as text rather than refused.
    assert tagger.tag(pa.array([1, 2])).to_pylist()[0] == tagger.tag(pa.array(["3"])).to_pylist()[0]


def test_each_distinct_message_is_masked_once_and_counted_per_line(monkeypatch):
    from logpipe.patterns import tagger as tagger_module

    masked_lengths = []
    real_mask = tagger_module.mask_array
    monkeypatch.setattr(tagger_module, "mask_array", lambda array: masked_lengths.append(len(array)) or real_mask(array))
    tagger = tagger_module.Tagger()
    ids = tagger.tag(pa.array(LINES * 50 + [None])).to_pylist()
    assert masked_lengths == [len(LINES)]  # 6 distinct messages, not 301
    assert ids[:len(LINES)] * 50 == ids[:-1] and ids[-1] == 0
    invalid_user, accepted = tagger.miner.get(ids[0]), tagger.miner.get(ids[2])
    assert invalid_user.template == "Invalid user <*> from <*>"
    # Counts are per line, not per distinct message.
    assert invalid_user.count == 3 * 50 and accepted.count == 2 * 50
