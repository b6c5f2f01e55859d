"""The `acd-router` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from router.config import read_config
from router.service.options import ServeOptions, startable_problems_of
from router.service.run import serve, version

Command = Callable[[argparse.Namespace], int]


def check_config(args: argparse.Namespace) -> int:
    """Validate a configuration as `serve` would (file, ACD_* variables, listening address, Redis
    URL, key and webhook secret variables): a one-line summary, or every problem on stderr."""
    config, errors = read_config(args.file, os.environ)
    errors += startable_problems_of(config, errors, os.environ, args.insecure)
    if errors or config is None:
        print("\n".join(f"{args.file}: {problem}" for problem in errors), file=sys.stderr)
        return 1
    print(
        f"ok: {len(config.queues)} queues, {len(config.keys)} keys, {len(config.webhooks)} webhooks"
    )
    return 0


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The options of a parsed `serve` command line."""
    return ServeOptions(
        config=args.config,
        listen=args.listen,
        redis_url=args.redis_url,
        data_dir=args.data_dir,
        clock_speed=args.clock_speed,
        insecure=args.insecure,
        log_json=args.log_json,
        workers=args.workers,
    )


def serve_command(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM, SIGINT or SIGHUP (SPEC §8)."""
    return serve(serve_options(args), os.environ)


def add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `serve` subcommand: flags over ACD_* variables over the configuration file."""
    run = commands.add_parser(
        "serve",
        help="run the service",
        description="Run the ACD service. Settings come from the configuration file, then "
        "ACD_* environment variables, then these flags.",
    )
    run.add_argument(
        "--config", metavar="FILE", help="the TOML configuration file (default: $ACD_CONFIG)"
    )
    run.add_argument("--listen", metavar="HOST:PORT", help="the HTTP address to listen on")
    run.add_argument(
        "--redis-url",
        metavar="URL",
        help="the Redis (or Redis Cluster) to use; empty or absent: a private redis-server",
    )
    run.add_argument(
        "--data-dir",
        metavar="DIR",
        help="keep the private redis-server's append-only file here across restarts "
        "(default: a temporary folder, lost at exit)",
    )
    run.add_argument(
        "--clock-speed",
        metavar="S",
        type=float,
        default=1.0,
        help="run the service's clock S times faster than real time, up to 1000 "
        "(load testing only)",
    )
    run.add_argument(
        "--insecure",
        action="store_true",
        help="start without API keys: every request acts as admin (local experiments only)",
    )
    run.add_argument(
        "--workers",
        metavar="N",
        help='serving processes behind the one listening port (default 1; "auto": one per core)',
    )
    run.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    run.set_defaults(run=serve_command)


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets `run` to the Command that handles it."""
    parser = argparse.ArgumentParser(prog="acd-router", description="ACD call-routing service")
    parser.add_argument("--version", action="version", version=f"acd-router {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file", metavar="FILE", help="the TOML configuration file")
    check.add_argument(
        "--insecure", action="store_true", help="no API key needed (as `serve --insecure`)"
    )
    check.set_defaults(run=check_config)
    add_serve(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); the exit status."""
    args = build_parser().parse_args(argv)
    run: Command = args.run
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
