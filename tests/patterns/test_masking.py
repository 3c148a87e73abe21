import pyarrow as pa
import pytest

from logpipe.patterns.masking import mask, mask_array, mask_many


@pytest.mark.parametrize("message, expected", [
    # numbers, ids, durations, key=value values
    ("Got assigned task 42", "Got assigned task <*>"),
    ("PacketResponder 1 for block blk_-6952295868487656571 terminating", "PacketResponder <*> for block <*> terminating"),
    ("Expiring session 0x24ede63a01b003b, timeout of 10000ms exceeded", "Expiring session <*>, timeout of <*> exceeded"),
    ("authentication failure; logname= uid=0 euid=0 tty=NODEVssh", "authentication failure; logname= uid=<*> euid=<*> tty=NODEVssh"),
    ("Found block rdd_2_3 locally", "Found block <*> locally"),
    # IPs with ports, paths, URLs
    ("Receiving block blk_1 src: /10.251.30.6:33145 dest: /10.251.30.6:50010",
     "Receiving block <*> src: <*>:<*> dest: <*>:<*>"),
    ("Deleting block blk_1781953582842324563 file /mnt/hadoop/dfs/data/current/subdir5/blk_1",
     "Deleting block <*> file <*>"),
    ("Directory index forbidden by rule: /var/www/html/", "Directory index forbidden by rule: <*>"),
    ("Input split: hdfs://10.10.34.11:9000/pjhe/logs/2kSOSP.log:21876+7292", "Input split: hdfs://<*>"),
    ("see http://wiki.apache.org/hadoop/NoRouteToHost", "see http://wiki.apache.org/hadoop/NoRouteToHost"),
    # UUIDs and hex
    ("request 70293f72-844a-4b39-9ad6-fb0ad7e364e4 failed", "request <*> failed"),
    ("request f81d4fae-7dec-11d0-a765-00a0c91e6bf6 failed", "request <*> failed"),
    ("mapped to ffff3000.", "mapped to <*>."),
    # quoted ids, sizes, dates and times
    ("Saved output of task 'attempt_201706092018_0024_m_000003_1012' to x", "Saved output of task '<*>' to x"),
    ("stored (estimated size 5.2 KB, free 317.0 KB)", "stored (estimated size <*>, free <*>)"),
    ("connection at Fri Jun 17 07:07:00 2005", "connection at <*> <*>:<*>:<*> <*>"),
    # a trailing full stop is punctuation, not part of the value
    ("started on port 55904.", "started on port <*>."),
    # digits glued to letters are names, not values
    ("jk2_init() Found child 6725 in scoreboard slot 10", "jk2_init() Found child <*> in scoreboard slot <*>"),
    ("Failed password for root from 5.36.59.76 port 42393 ssh2", "Failed password for root from <*> port <*> ssh2"),
    ("BIOS-e820: 0000000000100000 - 0000000007eae000 (usable)", "BIOS-e820: <*> - <*> (usable)"),
    ("charge req_a1b2c3d4 by user1234 on n219076184117.example.net",
     "charge <*> by <*> on <*>"),
    ("TLS handshake with TLSv1.2 on x86_64", "TLS handshake with <*> on <*>"),
    ("peer fe80::1ff:fe23:4567:890a and ::1 via 2001:0db8:85a3:0000:0000:8a2e:0370:7334",
     "peer <*> and <*> via <*>"),
    ("link 00:1a:2b:3c:4d:5e up at 07:07:00", "link <*> up at <*>:<*>:<*>"),
    ("std::vector grew", "std::vector grew"),
    ("Foo::add failed", "Foo::add failed"),
    (r"Loaded C:\Windows\winsxs\cbscore.dll and /usr/lib/libc.so", "Loaded <*> and <*>"),
    # whitespace folds, words stay
    ("Will  retry\tshortly ...", "Will retry shortly ..."),
    ("check pass; user unknown", "check pass; user unknown"),
])
def test_mask_cases(message, expected):
    assert mask(message) == expected


def test_mask_array_keeps_nulls_and_length():
    masked = mask_array(pa.chunked_array([["a 1", None], ["", "b 2"]]))
    assert masked.to_pylist() == ["a <*>", None, "", "b <*>"]


def test_mask_many_matches_mask():
    messages = ["user 1", "user 2 logged in from 10.0.0.1"]
    assert mask_many(messages) == [mask(m) for m in messages]


def test_rules_are_spelled_in_ascii_for_rust():
    from logpipe.patterns.masking import rust_pattern, rust_replacement

    assert rust_pattern(r"\b\d+\s") == r"(?-u:\b)[0-9]+[\t\n\f\r ]"
    assert rust_pattern(r"[^\s\d.]x\.") == r"[^\t\n\f\r 0-9.]x\."
    assert rust_pattern(r"[]a]") == r"[\]a]"
    assert rust_replacement(r"\1<*>$") == "${1}<*>$$"
    with pytest.raises(ValueError):
        rust_pattern(r"\w+")


def test_polars_masking_equals_the_re2_rules_on_unicode_and_ascii():
    """The rules run on Rust's regex; Arrow's RE2 with the same rules is the reference."""
    import random

    from logpipe.patterns.masking import mask_array_re2
    from logpipe.generator.service import LogFactory

    rng = random.Random(7)
    alphabet = list("abcXYZ0189 :=,;()[]{}\"'|/@#&?.-_+*\\\t\n\v\f\r") + [
        "\u00a0", "\u2003", "\u0663", "\uff11", "é", "ß", "日", "\u200b"]
    values = ["Jun 17", "Fri Jun 17", "5.2 KB", "3 MiB", "10.0.0.1:50010", "/var/log/x1", "C:\\tmp\\a",
              "http://a.b/c1", "fe80::1", "00:1a:2b:3c:4d:5e", "blk_-42", "user1234", "deadbeef", "v1.0.0",
              "ssh2", "0x1f", "٣٤٥", "１２３", "x\u00a012"]
    corpus = []
    for _ in range(20_000):
        parts = [rng.choice(values) if rng.random() < 0.4 else
                 "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 8))]
        corpus.append(rng.choice([" ", "", "\u00a0", ":", "\t", "  "]).join(parts))
    corpus += [r["message"] for r in LogFactory(seed=11).batch(5_000)] + ["", None]
    column = pa.array(corpus, pa.string())
    assert mask_array(column).to_pylist() == mask_array_re2(column).to_pylist()
