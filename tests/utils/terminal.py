"""A command run on a pseudo-terminal, as a user's shell runs it: what it drew, and its status."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


@dataclass
class Drawn:
    returncode: int
    raw: str
    """Every byte written to the terminal (standard output and error), decoded."""

    @property
    def text(self) -> str:
        """Without escape sequences, carriage returns made line breaks."""
        return ANSI.sub("", self.raw).replace("\r\n", "\n").replace("\r", "\n")


def run_on_terminal(
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    timeout: float,
    columns: int = 100,
    stdout: Path | None = None,
) -> Drawn:
    """Runs ``args`` with standard input, output and error on a new pseudo-terminal;
    ``stdout``: standard output to that file instead (``command > FILE`` in a shell)."""
    leader, follower = pty.openpty()
    # A new terminal is 0x0; programs that fit their drawing to it would draw nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    os.set_blocking(leader, False)
    out = stdout.open("wb") if stdout is not None else None
    proc = subprocess.Popen(
        args,
        stdin=follower,
        stdout=out if out is not None else follower,
        stderr=follower,
        env={**env, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"},
        cwd=cwd,
        close_fds=True,
    )
    os.close(follower)
    if out is not None:
        out.close()
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{args[:4]} still running after {timeout}s")
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the terminal's last writer has gone
                    chunk = b""
                if chunk:
                    chunks.append(chunk)
                    continue
                if proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return Drawn(proc.returncode, b"".join(chunks).decode(errors="replace"))
