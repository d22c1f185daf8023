"""The command line's view of a generation's events: a live bar, or plain lines.

The bar is drawn with ``rich`` (``pip install 'genserve-client[cli]'``) on a terminal;
without rich, or when standard error is not a terminal (a log, a pipe), each stage
and every quarter of it is one plain line instead. Nothing here is needed by the SDK.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, TextIO

from genserve.results import Event


class Display(Protocol):
    def update(self, event: Event) -> None: ...

    def close(self) -> None: ...


def rich_available() -> bool:
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return False
    return True


def make_display(
    label: str, stream: TextIO | None = None, *, use_rich: bool | None = None
) -> Display:
    """A rich bar when rich is installed and ``stream`` is a terminal, else plain lines."""
    out = stream if stream is not None else sys.stderr
    if use_rich is None:
        use_rich = rich_available() and out.isatty()
    if use_rich:
        return RichDisplay(label, out)
    return PlainDisplay(label, out)


def _describe(event: Event) -> str:
    if event.type == "queued":
        position = event.position
        return "queued" if position is None else f"queued (position {position})"
    if event.type == "progress":
        return event.stage or "working"
    return event.type


class PlainDisplay:
    """One line per stage, per quarter of a stage's steps, and for the end."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self._stage: str | None = None
        self._quarter = -1

    def _line(self, text: str) -> None:
        print(f"{self.label}: {text}", file=self.stream, flush=True)

    def update(self, event: Event) -> None:
        if event.type == "queued":
            self._line(_describe(event))
            return
        if event.type == "completed":
            self._line("done")
            return
        if event.type != "progress":
            return
        stage = _describe(event)
        fraction = event.fraction
        quarter = int(fraction * 4) if fraction is not None else -1
        if stage != self._stage:
            self._stage, self._quarter = stage, quarter
            self._line(self._progress_text(stage, event))
        elif quarter > self._quarter:
            self._quarter = quarter
            self._line(self._progress_text(stage, event))

    @staticmethod
    def _progress_text(stage: str, event: Event) -> str:
        if event.total:
            return f"{stage} {event.step or 0}/{event.total}"
        return stage

    def close(self) -> None:
        pass


class RichDisplay:
    """A live bar: the stage, its steps, elapsed time and rich's estimate of what is left."""

    def __init__(self, label: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.label = label
        self.console = Console(file=stream, soft_wrap=True)
        self.progress: Any = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            redirect_stdout=_same_terminal(stream),
        )
        self.progress.start()
        self.task = self.progress.add_task(f"{label}: starting", total=None)
        self._stage: str | None = None

    def update(self, event: Event) -> None:
        self._stage = _follow(self.progress, self.task, self.label, self._stage, event)
        if event.type == "completed":
            total = self.progress.tasks[0].total or 1
            self.progress.update(
                self.task, description=f"{self.label}: done", total=total, completed=total
            )

    def close(self) -> None:
        self.progress.stop()


def _same_terminal(stream: TextIO) -> bool:
    """Whether standard output is a terminal too: then what is printed there while the view
    is live goes above it (rich's redirect, unwrapped so that a printed path stays whole);
    else standard output (a file, a pipe) gets its lines untouched, not the view's stream."""
    try:
        return sys.stdout.isatty() and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _follow(progress: Any, task: Any, label: str, stage: str | None, event: Event) -> str | None:
    """Shows a queued or progress event on one rich task (a new stage starts the bar again);
    the stage now shown."""
    description = f"{label}: {_describe(event)}"
    if event.type == "queued":
        progress.update(task, description=description, total=None, completed=0)
    elif event.type == "progress":
        now = _describe(event)
        if now != stage:
            stage = now
            progress.reset(task, total=event.total or None, description=description)
        progress.update(
            task, description=description, total=event.total or None, completed=event.step or 0
        )
    return stage


class BatchDisplay(Protocol):
    """One view for a batch (``genserve image --from FILE``): items done of all, and the
    current item's progress."""

    def begin(self, number: int) -> None: ...

    def update(self, event: Event) -> None: ...

    def done(self, number: int, paths: list[str]) -> None: ...

    def close(self) -> None: ...


def make_batch_display(
    total: int, noun: str, stream: TextIO | None = None, *, use_rich: bool | None = None
) -> BatchDisplay:
    """Rich's two bars (items done of ``total``; the current one's steps) when rich is
    installed and ``stream`` is a terminal, else one plain line per finished item."""
    out = stream if stream is not None else sys.stderr
    if use_rich is None:
        use_rich = rich_available() and out.isatty()
    if use_rich:
        return RichBatchDisplay(total, noun, out)
    return PlainBatchDisplay(total, noun, out)


class PlainBatchDisplay:
    """``image 2/5: done (out/b.png)``: a line per finished item, nothing in between."""

    def __init__(self, total: int, noun: str, stream: TextIO) -> None:
        self.total, self.noun, self.stream = total, noun, stream

    def begin(self, number: int) -> None:
        pass

    def update(self, event: Event) -> None:
        pass

    def done(self, number: int, paths: list[str]) -> None:
        saved = f" ({', '.join(paths)})" if paths else ""
        print(f"{self.noun} {number}/{self.total}: done{saved}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichBatchDisplay:
    """Two bars under one live view: ``images`` done of the batch, and the current item's
    stage and steps (reset for each item)."""

    def __init__(self, total: int, noun: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.total, self.noun = total, noun
        self.progress: Any = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream, soft_wrap=True),
            transient=False,
            redirect_stdout=_same_terminal(stream),
        )
        self.progress.start()
        self.overall = self.progress.add_task(f"{noun}s done", total=total)
        self.current = self.progress.add_task(f"{noun} 1/{total}: starting", total=None)
        self._label = f"{noun} 1/{total}"
        self._stage: str | None = None

    def begin(self, number: int) -> None:
        self._label, self._stage = f"{self.noun} {number}/{self.total}", None
        self.progress.reset(self.current, total=None, description=f"{self._label}: starting")

    def update(self, event: Event) -> None:
        self._stage = _follow(self.progress, self.current, self._label, self._stage, event)

    def done(self, number: int, paths: list[str]) -> None:
        self.progress.update(self.current, description=f"{self._label}: done", completed=0)
        self.progress.update(self.overall, completed=number)

    def close(self) -> None:
        self.progress.stop()
