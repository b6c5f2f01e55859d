"""The `acd-router` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from router.config import load_config
from router.errors import ConfigError

Command = Callable[[argparse.Namespace], int]


def check_config(args: argparse.Namespace) -> int:
    """Validate a configuration file: a one-line summary, or every problem on stderr."""
    try:
        config = load_config(args.file)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(
        f"ok: {len(config.queues)} queues, {len(config.keys)} keys, {len(config.webhooks)} webhooks"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets `run` to the Command that handles it."""
    parser = argparse.ArgumentParser(prog="acd-router", description="ACD call-routing service")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file", metavar="FILE", help="the TOML configuration file")
    check.set_defaults(run=check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); the exit status."""
    args = build_parser().parse_args(argv)
    run: Command = args.run
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
