"""Benchmark figures as rows of one table.

Every benchmark returns :class:`Row` objects. Run alone it prints them as a
table; under ``bench.run_all`` it writes them to stdout as JSON lines (one row a
line, after a fixed marker), so one process can gather every benchmark's rows
into one table while each benchmark still runs in a process of its own (its own
torch threads, its own servers, nothing left behind).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from rich.console import Console
from rich.table import Table

MARKER = "bench-row "
"""What starts a row's line on stdout; anything else a benchmark prints is left alone."""

Status = Literal["", "pass", "short", "n/a"]

FORMATS = {"img/s": "{:.2f}", "ms": "{:.1f}", "x": "{:.2f}", "s": "{:.2f}", "KiB": "{:.0f}"}


@dataclass(frozen=True)
class Row:
    """One figure: where it belongs, what it is, its value, and the goal it is held to."""

    section: str
    figure: str
    value: float | None
    unit: str
    note: str = ""
    goal: str = ""
    status: Status = ""

    def shown(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "-"
        return FORMATS.get(self.unit, "{:.3g}").format(self.value)


def goal_row(
    section: str,
    figure: str,
    measured: float | None,
    unit: str,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    note: str = "",
    applies: bool = True,
) -> Row:
    """A goal's row: the measured figure, the bound, and ``pass`` or ``short``.

    ``applies=False`` (a GPU goal on a CPU run, say) shows the goal as ``n/a``;
    a goal with no figure (nothing measured) is ``n/a`` too.
    """
    bound = at_least if at_least is not None else at_most
    assert bound is not None, "a goal needs at_least or at_most"
    shown = FORMATS.get(unit, "{:.3g}").format(bound)
    goal = f">= {shown}" if at_least is not None else f"<= {shown}"
    status: Status
    if not applies or measured is None or math.isnan(measured):
        status = "n/a"
    elif at_least is not None:
        status = "pass" if measured >= at_least else "short"
    else:
        status = "pass" if measured <= bound else "short"
    return Row(section, figure, measured, unit, note=note, goal=goal, status=status)


def emit(rows: Iterable[Row]) -> None:
    for row in rows:
        print(MARKER + json.dumps(asdict(row)), flush=True)


def parse(lines: Iterable[str]) -> list[Row]:
    """The rows among a benchmark's output lines."""
    return [Row(**json.loads(line[len(MARKER) :])) for line in lines if line.startswith(MARKER)]


STATUS_STYLE = {"pass": "bold green", "short": "bold red", "n/a": "dim"}


def print_table(rows: list[Row], title: str = "genserve benchmarks") -> None:
    """One table, a section per benchmark and device, in the order the rows came."""
    table = Table(title=title, show_lines=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("goal")
    table.add_column("status")
    table.add_column("note")
    section = None
    for row in rows:
        if row.section != section:
            if section is not None:
                table.add_section()
            table.add_row(f"[bold]{row.section}[/bold]")
            section = row.section
        status = f"[{STATUS_STYLE[row.status]}]{row.status}[/]" if row.status else ""
        table.add_row(
            "  " + row.figure, row.shown(), row.unit, row.goal, status, row.note, end_section=False
        )
    # Piped (to a file, a log or a test) the table keeps its width instead of 80 columns.
    width = shutil.get_terminal_size((180, 24)).columns
    Console(width=max(width, 120)).print(table)


def report(rows: list[Row], as_rows: bool, title: str) -> None:
    """A benchmark's ending: its rows as JSON lines for ``run_all``, or as its own table."""
    if as_rows:
        emit(rows)
    else:
        print_table(rows, title)
