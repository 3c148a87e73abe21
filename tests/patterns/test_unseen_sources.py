"""The failure classes found on log sources the miner was never developed on (issue #18), each
shown on lines written for this test: one event must be one pattern, two events two patterns."""

import pytest

from logpipe.patterns import mask, mine
from logpipe.patterns.miner import PatternMiner, skeleton, tokenize


def ids_and_templates(lines, **kwargs):
    result = mine(lines, PatternMiner(**kwargs))
    return [pattern_id for pattern_id, _ in result], [template for _, template in result]


# -- host names and host:port are values like IPs ------------------------------------------------
@pytest.mark.parametrize("message, expected", [
    ("connect to db.prod.example.com:5432 failed", "connect to <*>:<*> failed"),
    ("connect to queue.internal.example.org:5672 failed", "connect to <*>:<*> failed"),
    ("connect to web-a:8080 failed", "connect to <*>:<*> failed"),
    ("connect to localhost:8080 failed", "connect to <*>:<*> failed"),
    ("resolved www.example.co.uk to 10.1.2.3", "resolved <*> to <*>"),
    ("mail from alice.smith+tag@mail.example.com.", "mail from <*>."),
    ("peer NODE-B.CLUSTER.LOCAL down", "peer <*> down"),
    # Names that only look dotted stay: classes, packages, config keys, a constant URL.
    ("loaded org.apache.hadoop.io.Text from java.util.concurrent", "loaded org.apache.hadoop.io.Text from java.util.concurrent"),
    ("mapred.task.id is deprecated. Instead, use mapreduce.task.attempt.id",
     "mapred.task.id is deprecated. Instead, use mapreduce.task.attempt.id"),
    ("see http://wiki.example.org/Troubleshooting", "see http://wiki.example.org/Troubleshooting"),
    ("state:RUNNING code:OK", "state:RUNNING code:OK"),
])
def test_host_names_are_masked_like_ips(message, expected):
    assert mask(message) == expected


def test_one_event_does_not_split_by_the_host_it_names():
    lines = ["connect to db.prod.example.com:5432 failed", "connect to 10.0.0.7:5432 failed",
             "connect to cache-2:6379 failed", "connect to queue.example.net:5672 failed"]
    ids, templates = ids_and_templates(lines)
    assert len(set(ids)) == 1
    assert set(templates) == {"connect to <*>:<*> failed"}


def test_a_word_meeting_a_masked_value_in_its_place_folds_at_once():
    # `42` is a value by masking, so the place varies: `alpha` is one of its values, no need to
    # wait for a third variant.
    ids, templates = ids_and_templates(["job alpha done", "job 42 done"])
    assert ids[0] == ids[1] and templates == ["job <*> done"] * 2


# -- optional parenthesised or unit-bearing parts ----------------------------------------------
@pytest.mark.parametrize("order", [0, 1, 2])
def test_optional_parts_do_not_split_an_event(order):
    lines = ["sent 512 bytes, lifetime 00:01", "sent 4096 bytes (4.0 KB), lifetime 00:02",
             "sent 120 bytes, lifetime <1 sec", "sent 9000 bytes (8.8 KB), lifetime 01:05"]
    lines = lines[order:] + lines[:order]
    ids, templates = ids_and_templates(lines)
    assert len(set(ids)) == 1
    assert len(set(templates)) == 1


def test_skeleton_drops_only_optional_parts():
    assert skeleton(tokenize(mask("sent 4096 bytes (4.0 KB), lifetime 00:02"))[0]) == "sent <*>, lifetime <*>"
    assert skeleton(tokenize(mask("sent 120 bytes, lifetime <1 sec"))[0]) == "sent <*>, lifetime <*>"
    # Words are kept: different words are different skeletons.
    assert skeleton(["sent", "<*>", "bytes", "to", "peer"]) != skeleton(["sent", "<*>", "bytes", "from", "peer"])


def test_different_words_around_an_optional_part_stay_apart():
    ids, _ = ids_and_templates(["upload 512 bytes (0.5 KB) ok", "download 512 bytes ok"])
    assert ids[0] != ids[1]


# -- short messages that differ in a meaningful keyword ---------------------------------------
def test_http_methods_are_distinct_events():
    lines = [f'10.0.0.{i} "{method} /v2/servers/{i} HTTP/1.1" status: 200 len: {100 + i}'
             for i, method in enumerate(["GET", "POST", "DELETE", "PUT", "GET", "POST"])]
    ids, templates = ids_and_templates(lines)
    assert len(set(ids)) == 4
    assert templates[0] == '<*> "GET <*> HTTP/<*>" status: <*> len: <*>'
    assert templates[2] == '<*> "DELETE <*> HTTP/<*>" status: <*> len: <*>'


def test_lifecycle_words_are_distinct_events_but_names_still_fold():
    uuid = "3f2a9c1e-{}-4a3a-a21b-a145a4ee5e61"
    events = [f"[instance: {uuid.format(1000 + i)}] VM {word} (Lifecycle Event)"
              for i, word in enumerate(["Started", "Paused", "Resumed", "Stopped"] * 3)]
    ids, templates = ids_and_templates(events)
    assert len(set(ids)) == 4
    assert templates[1] == "[instance: <*>] VM Paused (Lifecycle Event)"
    # Capitalised names are not a closed set: they keep coming, and once they are more than a
    # handful of lifecycle words would be, they fold into one variable.
    names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace"]
    ids, templates = ids_and_templates([f"User {name} logged in" for name in names])
    assert templates[-1] == "User <*> logged in"
    assert len(set(ids)) == 1


# -- variables glued to punctuation and brackets ----------------------------------------------
def test_values_glued_to_brackets_and_commas_give_one_template():
    lines = ["[instance: 3f2a9c1e-1111-4a3a-a21b-a145a4ee5e61] Terminating instance",
             "[instance: build-agent] Terminating instance", "[instance: abc] Terminating instance",
             "[instance:7f2a9c1e-2222-4a3a-a21b-a145a4ee5e61] Terminating instance"]
    ids, templates = ids_and_templates(lines)
    assert ids[:3] == [ids[0]] * 3 and set(templates[:3]) == {"[instance: <*>] Terminating instance"}
    leases = [f"lease granted key={key}, ttl={ttl}" for key, ttl in
              [("alpha", 30), ("beta-7", 31), ("gamma", 32), ("(none)", 33)]]
    ids, templates = ids_and_templates(leases)
    assert len(set(ids)) == 1 and set(templates) == {"lease granted key=<*>, ttl=<*>"}


# -- ids stay stable: what one process learned, another (a restart, a replica) agrees with ------
def test_a_restarted_miner_joins_an_optional_part_to_the_stored_pattern():
    first = PatternMiner()
    stored = first.add(mask("sent 512 bytes, lifetime 00:01"))
    restarted = PatternMiner()
    restarted.load(stored.id, stored.template)  # what the tagger reads back from ClickHouse
    assert restarted.add(mask("sent 4096 bytes (4.0 KB), lifetime 00:02")).id == stored.id
    assert restarted.add(mask("sent 120 bytes, lifetime <1 sec")).id == stored.id
    changed, merged = restarted.drain_changes()
    assert merged == {} and [pattern.template for pattern in changed] == []  # nothing to rewrite


def test_folding_at_a_masked_value_keeps_the_older_id_as_survivor_and_alias():
    miner = PatternMiner()
    word = miner.add("job alpha done").id
    survivor = miner.add(mask("job 42 done"))
    assert survivor.id == word and survivor.template == "job <*> done"
    # A replica that only saw the masked form first still converges on load.
    replica = PatternMiner()
    masked_first = replica.add(mask("job 43 done"))
    replica.load(word, "job <*> done")
    assert replica.resolve(masked_first.id) == replica.resolve(word) == min(word, masked_first.id)


def test_a_quoted_value_of_several_words_is_one_value():
    lines = ['acquire lock flags=0x1, tag="View Lock", uid=1000', 'acquire lock flags=0x1, tag="WindowManager", uid=1001',
             'acquire lock flags=0x6, tag="*alarm* sync", uid=1002', "acquire lock flags=0x1, tag='Audio Mix Wake', uid=1003"]
    ids, templates = ids_and_templates(lines)
    assert len(set(ids[:3])) == 1 and templates[0] == 'acquire lock flags=<*>, tag="<*>", uid=<*>'
    # An unclosed quote stays as it was: its words are words.
    assert tokenize('say msg="hello world')[0] == ["say", 'msg="hello', "world"]


# -- a name as the first word ------------------------------------------------------------------
def test_an_event_whose_first_word_is_a_program_name_is_one_pattern():
    lines = ["chrome.exe - proxy.example.com:5070 close, 451 bytes sent, 18578 bytes (18.1 KB) received, lifetime 00:01",
             "firefox.exe - proxy.example.com:5070 close, 1190 bytes sent, 1671 bytes received, lifetime <1 sec",
             "outlook.exe - mail.example.com:443 close, 2048 bytes (2.0 KB) sent, 1671 bytes received, lifetime 02:01",
             "svchost.exe - 10.0.0.5:80 close, 0 bytes sent, 0 bytes received, lifetime <1 sec",
             "chrome.exe - proxy.example.com:5070 close, 99 bytes sent, 7 bytes received, lifetime 00:07"]
    ids, templates = ids_and_templates(lines)
    assert len(set(ids)) == 1
    assert templates[0].startswith("<*> - <*>:<*> close, <*> bytes")
    # The first two alone are two patterns: two names are not yet evidence of a variable.
    assert len(set(ids_and_templates(lines[:2])[0])) == 2


def test_a_first_word_that_is_the_event_stays_apart():
    # A short rest: the first word is the event (`cupsd startup succeeded` style).
    ids, _ = ids_and_templates(["nginx reload done", "redis reload done", "cron reload done"])
    assert len(set(ids)) == 3
    # Capitalised first words are event words, however long the rest.
    ids, _ = ids_and_templates(["Primary pool: 4096 pages, batch 31", "Reserve pool: 4096 pages, batch 31",
                                "Spare pool: 1024 pages, batch 7"])
    assert len(set(ids)) == 3


def test_a_replica_that_loads_the_folded_pattern_takes_a_new_program_name():
    miner = PatternMiner()
    for name in ("alpha", "bravo", "charlie"):
        folded = miner.add(mask(f"{name} - 10.0.0.1:80 close, 5 bytes sent, 6 bytes received"))
    assert folded.template == "<*> - <*>:<*> close, <*> bytes sent, <*> bytes received"
    replica = PatternMiner()
    replica.load(folded.id, folded.template)
    # Looking up without learning finds it too.
    assert replica.match(mask("echo - 10.0.0.3:80 close, 3 bytes sent, 4 bytes received")).id == folded.id
    assert replica.add(mask("delta - 10.0.0.2:80 close, 1 bytes sent, 2 bytes received")).id == folded.id


def test_after_an_upgrade_a_stored_template_with_a_host_name_keeps_its_id_and_widens():
    # Stored by the version before, which kept a host name without digits as a word.
    old_id, old_template = 4242, "connect to db.prod.example.com:<*> failed"
    miner = PatternMiner()
    miner.load(old_id, old_template)
    pattern = miner.add(mask("connect to db.prod.example.com:5432 failed"))
    assert pattern.id == old_id and pattern.template == "connect to <*>:<*> failed"
    assert miner.add(mask("connect to cache.example.net:6379 failed")).id == old_id
    # A pattern that the version before had merged stays one id: ids never split.
    miner.load(777, '<*> "<*> <*> HTTP/<*>" status: <*>')
    assert miner.add(mask('10.0.0.1 "GET /a HTTP/1.1" status: 200')).id == 777
