"""``genserve bridge ARGS...``: serve the REST bridge (``python -m rest_bridge ARGS...``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genserve._internal.cmdline import Subparsers


def cmd_bridge(args: argparse.Namespace) -> int:
    from rest_bridge.__main__ import main

    main(args.rest)
    return 0


def register(subparsers: Subparsers) -> None:
    bridge = subparsers.add_parser("bridge", help="run the REST bridge")
    bridge.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of python -m rest_bridge")
    bridge.set_defaults(func=cmd_bridge, pass_through=True)
