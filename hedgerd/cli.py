"""Command line: ``hedgerd run | check-config | status | kill | resume | simulate | venue-sim``.

Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from hedgerd.config import (
    Settings,
    load_settings,
    masked_settings_dict,
    render_settings,
    secret_values,
    settings_notes,
)
from hedgerd.errors import ConfigError
from hedgerd.log import configure_logging, redact, register_secrets
from hedgerd.policy import POLICY_NAMES

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hedgerd", description="Live delta-hedging daemon.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=None,
                       help="TOML config file (default: $HEDGERD_CONFIG, else the embedded paper default)")
        return p

    with_config(sub.add_parser("run", help="run the daemon in the foreground"))
    check = with_config(sub.add_parser("check-config", help="validate and print the effective config"))
    check.add_argument("--format", choices=("toml", "json"), default="toml")
    for name, help_text in (("status", "show a running daemon's status"),
                            ("kill", "halt a running daemon's trading"),
                            ("resume", "resume a halted daemon's trading")):
        p = with_config(sub.add_parser(name, help=help_text))
        p.add_argument("--url", default=None, help="admin base URL (default: from config)")
        if name == "kill":
            p.add_argument("--reason", default="operator kill via CLI")
            p.add_argument("--reducing", action="store_true",
                           help="only allow orders that reduce the hedge position instead of halting")
    simulate = with_config(sub.add_parser(
        "simulate", help="run the engine on simulated time against simulated venues and print hedging figures"))
    simulate.add_argument("--scenario", type=Path, default=None,
                          help="scenario TOML file (default: the built-in day; see hedgerd.simulate)")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--duration", default="24h", help="simulated time, e.g. 24h, 90m, 3600s")
    policies = simulate.add_mutually_exclusive_group()
    policies.add_argument("--policy", type=_policy_list, default=[None], metavar="NAME[,NAME...]",
                          help=f"hedge policy, or several separated by commas to compare them on the same seed "
                               f"({', '.join(POLICY_NAMES)}; default: policy.name from the config)")
    policies.add_argument("--compare", dest="policy", action="store_const", const=list(POLICY_NAMES),
                          help=f"run every policy ({','.join(POLICY_NAMES)}) and compare them")
    simulate.add_argument("--json", action="store_true",
                          help="print the figures as JSON (a list when several policies run)")
    simulate.add_argument("--plot", type=Path, default=None,
                          help="write a PNG: price, each policy's net delta and band, cumulative hedging cost "
                               "(needs matplotlib: pip install 'hedgerd[plot]')")
    sub.add_parser("venue-sim", help="run the local Binance-protocol exchange simulator (see venue-sim --help)",
                   add_help=False)
    return parser


def _policy_list(text: str) -> list[str | None]:
    """``--policy fixed,adaptive`` -> the named policies in order, each once."""
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in POLICY_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown policy {', '.join(unknown) or repr(text)} "
                                         f"(choose from {', '.join(POLICY_NAMES)}, several separated by commas)")
    return list(names)


def _load(config: Path | None) -> Settings:
    settings = load_settings(config)
    register_secrets(secret_values(settings))
    return settings


def _print_config_error(exc: ConfigError) -> None:
    problems = getattr(exc, "problems", None) or [(exc.path, exc.reason)]
    for path, reason in problems:
        print(f"hedgerd: config error at {path}: {redact(reason)}", file=sys.stderr)


def _admin_request(settings: Settings, url: str | None, method: str, path: str,
                   body: dict[str, Any] | None = None) -> int:
    host = settings.admin.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    base = url or f"http://{host}:{settings.admin.port}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if settings.admin.token is not None:
        request.add_header("Authorization", f"Bearer {settings.admin.token.get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            print(response.read().decode())
            return EXIT_OK
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(), file=sys.stderr)
        return EXIT_FAILURE
    except (urllib.error.URLError, OSError) as exc:
        print(f"hedgerd: cannot reach the daemon at {base}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _run(settings: Settings, config: Path | None) -> int:
    from hedgerd.daemon import run_daemon
    from hedgerd.ledger import LedgerError

    configure_logging(settings.logging.format, settings.logging.level)
    log = structlog.get_logger("hedgerd")
    log.debug("effective_config", config=masked_settings_dict(settings), config_file=str(config or ""))
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        result: int = runner(run_daemon(settings, config))
        return result
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    except LedgerError as exc:
        log.error("ledger_unusable", error=str(exc))
        print(f"hedgerd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        log.exception("fatal")
        print(f"hedgerd: fatal: {redact(repr(exc))}", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["venue-sim"]:
        venue_sim = importlib.import_module("hedgerd.venue_sim")
        return int(venue_sim.main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    try:
        settings = _load(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(render_settings(settings, args.format))
        for note in settings_notes(settings):
            print(f"hedgerd: note: {note}", file=sys.stderr)
        return EXIT_OK
    if args.command == "run":
        return _run(settings, args.config)
    if args.command == "status":
        return _admin_request(settings, args.url, "GET", "/status")
    if args.command == "kill":
        return _admin_request(settings, args.url, "POST", "/kill",
                              {"reason": args.reason, "reducing": args.reducing})
    if args.command == "resume":
        return _admin_request(settings, args.url, "POST", "/resume", {})
    if args.command == "simulate":
        from hedgerd.simulate_cli import run_cli

        return run_cli(settings, scenario_file=args.scenario, seed=args.seed, duration=args.duration,
                       policies=args.policy, as_json=args.json, plot=args.plot)
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
