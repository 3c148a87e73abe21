"""The `logpipe patterns mine` contract, through the installed command."""

import subprocess
import sys
from pathlib import Path

LOGPIPE = Path(sys.executable).with_name("logpipe")


def run_mine(text: str) -> list[tuple[str, str]]:
    done = subprocess.run([str(LOGPIPE), "patterns", "mine"], input=text.encode(), capture_output=True,
                          timeout=120, check=True)
    lines = done.stdout.decode().split("\n")
    assert lines[-1] == ""
    return [tuple(line.split("\t", 1)) for line in lines[:-1]]


def test_one_output_line_per_input_line_with_final_templates():
    text = "\n".join([
        "Invalid user admin from 10.0.0.1",
        "session opened for user root by (uid=0)",
        "Invalid user oracle from 10.0.0.2",
        "",
        "Invalid user guest from 10.0.0.3",
        "session opened for user news by (uid=0)",
    ]) + "\n"
    out = run_mine(text)
    assert len(out) == 6
    # The first line is printed with its template as it stands after all input was read.
    assert out[0][1] == out[2][1] == out[4][1] == "Invalid user <*> from <*>"
    assert out[0][0] == out[2][0] == out[4][0]
    assert out[1][1] == "session opened for user root by (uid=<*>)"
    assert out[3] == ("0", "")
    assert all(pattern_id.isdigit() for pattern_id, _ in out)


def test_same_input_same_ids_and_no_trailing_newline_needed():
    first = run_mine("worker 1 started\nworker 2 started")
    assert first == run_mine("worker 1 started\nworker 2 started\n")
    assert [t for _, t in first] == ["worker <*> started"] * 2
