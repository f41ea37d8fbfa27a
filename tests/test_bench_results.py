"""A benchmark run rewrites the table of bench/RESULTS.md and keeps the notes written below it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"

# In a process of its own: bench/run.py puts bench/ first on sys.path.
_WRITE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import run
figures = json.loads(sys.argv[2])
former = sys.stdin.read()
sys.stdout.write(run.results_page(figures, "test machine", former))
"""


def _rewritten(former: str, figures: dict[str, object]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _WRITE, str(BENCH), json.dumps(figures)],
        input=former,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_a_run_replaces_the_table_and_keeps_the_notes() -> None:
    first = _rewritten("", {"http_ratio": 0.91})
    assert "| http_ratio | 0.91 | >= 0.95 | NO |" in first
    noted = first + "\n## Why\n\nThe host was busy.\n"

    second = _rewritten(noted, {"http_ratio": 0.97})

    assert "| http_ratio | 0.97 | >= 0.95 | yes |" in second
    assert "0.91" not in second
    assert second.endswith("\n## Why\n\nThe host was busy.\n")
    third = _rewritten(second, {"http_ratio": 0.97})
    assert third.count("<!-- notes") == 1 and third.count("The host was busy.") == 1
    assert third.endswith("\n## Why\n\nThe host was busy.\n")  # nothing piles up


def test_a_page_without_the_notes_mark_is_replaced_and_gets_one() -> None:
    old = "# Benchmark results\n\n| figure | value | target | met |\n| http_ratio | 0.5 | | |\n"

    page = _rewritten(old, {"http_ratio": 0.97})

    assert "0.5 |" not in page
    assert page.count("| http_ratio |") == 1
    with_notes = page + "## Why\n"
    assert _rewritten(with_notes, {"http_ratio": 0.9}).endswith("## Why\n")
