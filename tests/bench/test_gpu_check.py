"""``bench.gpu_check``'s table: every promised figure has a line, with a reason when missing."""

from __future__ import annotations

from bench.gpu_check import ROWS, Figure, Outcome, row_lines


def test_a_row_stopped_at_its_limit_keeps_its_figures_and_says_why_for_the_rest() -> None:
    sdxl = next(r for r in ROWS if r.name == "sdxl")
    given = Figure("sdxl", "batch 1, 1024x1024", 0.5, 2.0, 9.1, 3.0, None, 12.0, "eager")
    lines = row_lines(sdxl, Outcome([given], problem="stopped at its limit of 90 s"))
    assert [f.figure for f in lines] == ["batch 1, 1024x1024", "batch N"]
    assert lines[0].per_second == 0.5
    assert lines[0].note.endswith("(then stopped at its limit of 90 s)")
    assert lines[1].per_second is None and lines[1].note == "stopped at its limit of 90 s"


def test_the_turns_row_measures_two_families_under_one_budget() -> None:
    turns = next(r for r in ROWS if r.name == "turns")
    assert turns.run is not None and len(turns.figures) == 2
    (missing, _) = row_lines(turns, Outcome())
    assert missing.seconds is None and "gave no figure" in missing.note  # says why when cut
