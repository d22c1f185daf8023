"""``make load`` keeps working: its script, run for a few seconds at a low rate, and its verdict."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from bench.load import MAX_REFUSED, OPENING_POINTS, PRICE, WARM_UP, Outcome, verdict
from tests.utils.scripts import run_module


@pytest.mark.server
def test_load_script_runs_and_loses_nothing(model_cache: Path) -> None:
    args = ["--seconds", "3", "--rate", "2", "--cache", str(model_cache)]
    out = run_module("bench.load", *args, timeout=240)

    def figures(pattern: str) -> tuple[str, ...]:
        found = re.search(pattern, out, re.MULTILINE)
        assert found is not None, (pattern, out)
        return found.groups()

    assert figures(r"^sent\s+(\d+) in") == ("6",)
    assert figures(r"^answered\s+(\d+) \((.*)\)") == ("6", "200: 6")
    assert figures(r"^lost\s+(\d+)") == ("0",)
    assert figures(r"^refused\s+(\d+) of (\d+) sent \(([\d.]+)%") == ("0", "6", "0.0")
    figures(r"^latency\s+p50 (\d+) ms\s+p95 (\d+) ms\s+p99 (\d+) ms")
    for process in ("bridge", "inference"):
        before, after = figures(rf"^RSS {process}\s+before\s+([\d.]+) MiB\s+after\s+([\d.]+) MiB")
        assert float(before) > 0 and float(after) > 0
    assert figures(r"^database\s+generations (\d+) \(completed: \d+\); live (\d+)") == ("9", "0")
    balance, ledger = figures(r"^points\s+balance (\d+), ledger sum (\d+)")
    assert balance == ledger
    assert out.rstrip().endswith("OK: nothing lost, 0.0% refused (at most 5.0%)")


def _judged(answers: dict[int, int], max_refused: float = MAX_REFUSED) -> list[str]:
    """The verdict on a run whose every request was answered with ``answers`` (by status),
    its database as such a run leaves it: a completed, paid row per 200 and the warm-up's."""
    out = Outcome(sent=sum(answers.values()), statuses=Counter(answers))
    completed = answers.get(200, 0) + WARM_UP
    balance = OPENING_POINTS - PRICE * completed
    return verdict(out, Counter({"completed": completed}), balance, balance, max_refused)


def test_a_clean_run_passes_and_a_few_refusals_are_allowed() -> None:
    assert _judged({200: 100}) == []
    assert _judged({200: 95, 429: 3, 503: 2}) == []  # 5 %: at the default share, not over it


def test_a_run_refused_past_the_share_fails() -> None:
    (problem,) = _judged({200: 90, 429: 6, 503: 3, 402: 1})
    assert problem == "10 of 100 requests refused (10.0%, more than 5.0%)"
    assert _judged({200: 90, 429: 10}, max_refused=0.1) == []
    assert _judged({200: 99, 503: 1}, max_refused=0.0) != []


def test_a_run_where_everything_was_refused_fails() -> None:
    (problem,) = _judged({503: 6})
    assert "6 of 6 requests refused (100.0%" in problem


def test_errors_and_lost_requests_fail_whatever_the_share() -> None:
    assert _judged({200: 9, 500: 1}, max_refused=1.0) == ["1 answers were errors (500: 1)"]
    out = Outcome(sent=2, statuses=Counter({200: 1}), lost=Counter({"ReadTimeout": 1}))
    paid = OPENING_POINTS - PRICE * (1 + WARM_UP)
    problems = verdict(out, Counter({"completed": 1 + WARM_UP}), paid, paid, 1.0)
    assert problems == ["1 requests got no answer"]
    assert verdict(Outcome(), Counter({"completed": WARM_UP}), 0, 0, 1.0)[0] == (
        "no request was sent"
    )
