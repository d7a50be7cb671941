"""Command line: ``hedgerd run | check-config | status | kill | resume | simulate | venue-sim``.

Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from hedgerd.admin.control import control_command, load_admin_config
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
from hedgerd.models import OrderType
from hedgerd.policy import POLICY_NAMES

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hedgerd", description="Live delta-hedging daemon.")
    parser.add_argument("--version", action="version", version=f"hedgerd {_version()}")
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
        p = with_config(sub.add_parser(
            name, help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}. Reads only the admin address and token "
                        "(config file, HEDGERD_ADMIN__*, secrets dir); needs no exchange credentials."))
        p.add_argument("--url", default=None, help="admin base URL (default: from config)")
        p.add_argument("--json", action="store_true", help="print the daemon's raw JSON answer")
        if name == "kill":
            p.add_argument("--reason", default="operator kill via CLI")
            p.add_argument("--reducing", action="store_true",
                           help="only allow orders that reduce the hedge position instead of halting")
    simulate = with_config(sub.add_parser(
        "simulate", help="run the engine on simulated time against simulated venues and print hedging figures"))
    simulate.add_argument("--scenario", type=Path, default=None,
                          help="scenario TOML file, or a built-in one by name: default-day (the default) or "
                               "options-book (with --config config/paper-options.toml); see hedgerd.sim.scenario")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--duration", default="24h", help="simulated time, e.g. 24h, 90m, 3600s")
    policies = simulate.add_mutually_exclusive_group()
    policies.add_argument("--policy", type=_policy_list, default=[None], metavar="NAME[,NAME...]",
                          help=f"hedge policy, or several separated by commas to compare them on the same seed "
                               f"({', '.join(POLICY_NAMES)}; default: policy.name from the config)")
    policies.add_argument("--compare", dest="policy", action="store_const", const=list(POLICY_NAMES),
                          help=f"run every policy ({','.join(POLICY_NAMES)}) and compare them")
    simulate.add_argument("--order-type", choices=["market", "limit_ioc", "passive"], default=None,
                          help="hedge orders' executor.order_type (default: the config's)")
    simulate.add_argument("--json", action="store_true",
                          help="print the figures as JSON (a list when several policies run)")
    simulate.add_argument("--plot", type=Path, default=None,
                          help="write a PNG: price, each policy's net delta and band, cumulative hedging cost "
                               "(needs matplotlib: pip install 'hedgerd[plot]')")
    sub.add_parser("venue-sim", add_help=False,
                   help="run the local exchange simulator, Binance and/or Deribit protocol (see venue-sim --help)")
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("hedgerd")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from hedgerd import __version__

        return f"{__version__} (not installed)"


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
    except ConfigError as exc:  # found at startup, e.g. the admin port taken: no traceback
        log.error("config_error", path=exc.path, reason=redact(exc.reason))
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
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # A reader that went away (`hedgerd status | head`) is not an error worth a traceback;
        # stdout is pointed at /dev/null so the interpreter's own flush at exit stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    return code


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["venue-sim"]:
        venue_sim = importlib.import_module("hedgerd.exchange_sim")
        return int(venue_sim.main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    if args.command in ("status", "kill", "resume"):
        # Emergency controls read the admin section only, so that nothing else can block them.
        try:
            admin = load_admin_config(args.config)
        except ConfigError as exc:
            _print_config_error(exc)
            return EXIT_CONFIG
        return control_command(args.command, admin, url=args.url, as_json=args.json,
                               reason=getattr(args, "reason", None), reducing=getattr(args, "reducing", False))
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
    if args.command == "simulate":
        from hedgerd.sim.cli import run_cli

        if args.order_type is not None:
            executor = settings.executor.model_copy(update={"order_type": OrderType(args.order_type)})
            settings = settings.model_copy(update={"executor": executor})
        return run_cli(settings, scenario_file=args.scenario, seed=args.seed, duration=args.duration,
                       policies=args.policy, as_json=args.json, plot=args.plot)
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
