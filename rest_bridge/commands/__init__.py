"""The operator subcommands of ``genserve`` that come with the bridge.

Each module holds one subcommand and its ``register(subparsers)``, named in the
root ``pyproject.toml`` under ``[project.entry-points."genserve.commands"]``;
``genserve.cli`` finds them there (the protocol is described in that module).
"""
