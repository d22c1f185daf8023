"""``genserve inference ARGS...``: run the gRPC inference server (``inference_server.server``).

Registered in the ``genserve.commands`` entry-point group; see ``genserve.cli``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genserve._internal.cmdline import Subparsers


def cmd_inference(args: argparse.Namespace) -> int:
    from inference_server.server import main

    main(args.rest)
    return 0


def register(subparsers: Subparsers) -> None:
    inference = subparsers.add_parser("inference", help="run the gRPC inference server")
    inference.add_argument(
        "rest", nargs=argparse.REMAINDER, help="arguments of python -m inference_server.server"
    )
    inference.set_defaults(func=cmd_inference, pass_through=True)
