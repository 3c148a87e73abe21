from logpipe.patterns import mine
from logpipe.patterns.miner import PatternMiner, generalize_token, pattern_id_for, tokenize


def templates(lines, **kwargs):
    return [template for _, template in mine(lines, PatternMiner(**kwargs))]


def test_a_word_becomes_a_variable_after_enough_variants():
    lines = ["Invalid user admin from 1.2.3.4", "Invalid user oracle from 1.2.3.5"]
    # Two variants may be two events (startup/shutdown): they stay apart...
    assert templates(lines) == ["Invalid user admin from <*>", "Invalid user oracle from <*>"]
    # ...a third shows the position varies, and all three fold into one pattern.
    result = mine(lines + ["Invalid user guest from 1.2.3.6"], PatternMiner())
    assert {template for _, template in result} == {"Invalid user <*> from <*>"}
    assert len({pattern_id for pattern_id, _ in result}) == 1


def test_distinct_events_are_not_merged():
    lines = ["cupsd startup succeeded", "cupsd shutdown succeeded"] * 3
    assert set(templates(lines)) == {"cupsd startup succeeded", "cupsd shutdown succeeded"}
    states = ["job_1 Transitioned from NEW to INITED", "job_2 Transitioned from INITED to SETUP",
              "job_3 Transitioned from SETUP to RUNNING", "job_4 Transitioned from RUNNING to KILLED"]
    assert len(set(templates(states))) == 4


def test_generalisation_keeps_shared_punctuation():
    assert generalize_token("user=root", "user=admin") == "user=<*>"
    assert generalize_token("(host.example.com)", "(<*>)") == "(<*>)"
    assert generalize_token("org.apache.Foo", "org.apache.bar.Baz") == "org.apache.<*>"
    assert generalize_token("FOLLOWING", "LEADING") == "<*>"


def test_variable_length_values_match_one_pattern():
    lines = [f"users online: {' '.join(str(i) for i in range(n))} now" for n in (1, 2, 5, 9)]
    result = mine(lines, PatternMiner())
    assert len({pattern_id for pattern_id, _ in result}) == 1
    # Seen with different lengths, the run is shown as one variable.
    assert result[0][1] == "users online: <*> now"
    # A run of constant width keeps its shape.
    assert templates(["allocate /a/b 1", "allocate /c/d 2"]) == ["allocate <*> <*>"] * 2


def test_elastic_matching_absorbs_words_into_a_variable():
    miner = PatternMiner()
    for user in ("alice", "bob", "carol"):
        miner.add(f"login by {user} ok")
    pattern = miner.add("login by <*> ok")
    assert pattern.template == "login by <*> ok"
    # A value of two words still matches: the variable absorbs both tokens.
    assert miner.match("login by mary ann ok") is pattern


def test_converged_templates_merge_into_the_smaller_id_and_keep_an_alias():
    miner = PatternMiner(min_variants=3)
    a = miner.add("disk sda full").id
    b = miner.add("disk sdb full").id
    assert a != b
    survivor = miner.add("disk sdc full").id
    assert survivor == min(a, b)
    assert miner.resolve(a) == survivor and miner.resolve(b) == survivor
    changed, merged = miner.drain_changes()
    assert merged == {max(a, b): survivor}
    assert [p.template for p in changed if p.id == survivor] == ["disk <*> full"]


def test_ids_are_stable_across_miners():
    lines = ["GET /index.html 200", "worker 3 started", "worker 4 started"]
    first = mine(lines, PatternMiner())
    second = mine(lines, PatternMiner())
    assert first == second
    assert first[0][0] == pattern_id_for("GET <*> <*>")
    assert all(0 < pattern_id < 2**53 for pattern_id, _ in first)


def test_tokenize_folds_a_date_into_one_value():
    tokens, widths = tokenize("at <*> <*>:<*>:<*> <*> done")
    assert tokens == ["at", "<*>:<*>:<*>", "done"]


def test_memory_cap_evicts_least_recently_used():
    miner = PatternMiner(max_patterns=50)
    # 20,000 messages of 20,000 different shapes (distinct first words): the cap holds.
    for i in range(20_000):
        word = "".join(chr(97 + (i // 26 ** k) % 26) for k in range(4))
        miner.add(f"{word} event happened")
    assert len(miner.patterns) <= 50
    assert miner.evicted >= 20_000 - 50
    assert sum(len(b) for b in miner._buckets.values()) == len(miner.patterns)
    # What is still in memory is what was used last.
    assert miner.match("aaab event happened") is None
    last = "".join(chr(97 + (19_999 // 26 ** k) % 26) for k in range(4))
    assert miner.match(f"{last} event happened") is not None


def test_empty_messages_have_no_pattern():
    assert mine(["", "x 1"], PatternMiner())[0] == (0, "")


def test_a_pattern_relearned_after_eviction_gets_its_old_id_back():
    miner = PatternMiner(max_patterns=3)
    for disk in ("sda", "sdb", "sdc"):
        original = miner.add(f"disk {disk} full")
    assert original.template == "disk <*> full"
    for i in range(5):  # push it out of memory
        miner.add(f"event{i} happened")
    assert original.id not in miner.patterns
    ids = {miner.add(f"disk {disk} full").id for disk in ("sdx", "sdy", "sdz")}
    again = miner.add("disk sdq full")
    assert again.id == original.id and again.template == "disk <*> full"
    # The ids handed out while it was being re-learned resolve to the old one.
    assert {miner.resolve(i) for i in ids} == {original.id}


def test_a_first_token_that_is_partly_a_value_can_vary():
    hosts = ["proxy.example.edu", "www.google.com", "mail.yahoo.com"]
    lines = [f"{host}:{443 + i} open through proxy {host}:5070 HTTPS" for i, host in enumerate(hosts)]
    assert set(templates(lines)) == {"<*>:<*> open through proxy <*>:<*> HTTPS"}
    # A plain first word is still an event name: these stay apart.
    assert len(set(templates(["onStart called", "onStop called", "onPause called"]))) == 3


def test_huge_messages_make_bounded_patterns():
    dump = " ".join(f"word{i % 7}x" for i in range(50_000))
    blob = "payload " + "QUJD" * 20_000
    miner = PatternMiner()
    for _ in range(3):
        pattern = miner.add(dump)
        miner.add(blob)
    assert len(pattern.tokens) == 256 and pattern.tokens[-1] == "<*>"
    assert miner.add(blob).template == "payload <*>"
