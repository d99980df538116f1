"""Command line: plan, run, resume and inspect a workforce of worker instructions.

    launch_workforce.py --all | --priority N [--dry-run [--json] [--strict]] [run options]
    launch_workforce.py --resume [RUN_ID] [--replan]
    launch_workforce.py status [RUN_ID] [--json]
    launch_workforce.py similar "text" [-k 5] [--status passed] [--json]
    launch_workforce.py retrospectives search "text" [-k 5] [--json]

Exit status: 0 success, 1 a run that did not pass every worker, 2 bad input, configuration,
credentials or state (printed as file:line: message, never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import from the repository root, not from orchestration/ itself.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from rich.console import Console

from orchestration.config import WorkforceConfig, load_config
from orchestration.errors import WorkforceError
from orchestration.instruction import Diagnostic
from orchestration.loader import load_workers
from orchestration.plan_report import plan_json, print_diagnostics, print_plan
from orchestration.planner import plan

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                      ("TRANSFORMERS_VERBOSITY", "error"), ("ANONYMIZED_TELEMETRY", "False"),
                      ("MEM0_TELEMETRY", "False"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)  # never reach for a hub, never phone home

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
BASE_DIR = Path.cwd()
SUBCOMMANDS = ("status", "similar", "retrospectives")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch-workforce", description=(__doc__ or "").split("\n\n")[0])
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--all", action="store_true", help="every wave, in ascending priority")
    scope.add_argument("--priority", type=int, metavar="N", help="only the wave of priority N")
    scope.add_argument("--resume", nargs="?", const="", metavar="RUN_ID",
                       help="continue a crashed or stopped run (the latest by default)")
    parser.add_argument("--replan", action="store_true", help="with --resume: accept changed instructions")
    parser.add_argument("--dry-run", action="store_true", help="load and plan only; run nothing")
    parser.add_argument("--workers-dir", help="folder of WORKER_*.md files (default from config)")
    parser.add_argument("--target", help="tree the deliverables are integrated into (default from config)")
    parser.add_argument("--max-concurrency", type=int, metavar="N", help="workers running at once")
    parser.add_argument("--provider", help="use this provider for every worker (e.g. replay, openai, ollama)")
    parser.add_argument("--budget-usd", type=float, metavar="USD", help="stop starting workers once spent")
    parser.add_argument("--run-id", help="name of a new run (default: a timestamp)")
    parser.add_argument("--config", help="configuration file (default config/workforce.yaml)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--strict", action="store_true", help="with --dry-run: treat warnings as errors")
    parser.add_argument("--show-config", action="store_true", help="print the effective configuration")
    parser.add_argument("--verbose", action="store_true", help="log progress details to stderr")
    return parser


def build_subparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch-workforce")
    parser.add_argument("--config", help="configuration file")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="progress of a run, from the state store")
    status.add_argument("run_id", nargs="?", help="run id (the latest by default)")
    status.add_argument("--json", action="store_true")
    similar = commands.add_parser("similar", help="workers most similar to a text (ChromaDB)")
    similar.add_argument("text")
    similar.add_argument("-k", type=int, default=5)
    similar.add_argument("--status", help="only results with this status, e.g. passed")
    similar.add_argument("--json", action="store_true")
    retros = commands.add_parser("retrospectives", help="search stored retrospectives (mem0)")
    retros_commands = retros.add_subparsers(dest="action", required=True)
    search = retros_commands.add_parser("search")
    search.add_argument("text")
    search.add_argument("-k", type=int, default=5)
    search.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    console = Console()
    try:
        if argv and argv[0] in SUBCOMMANDS:
            from orchestration.logs import configure_logging
            from orchestration.queries import run_subcommand

            args = build_subparser().parse_args(argv)
            config = load_config(args.config)
            configure_logging(_path(config.logs_dir))
            return run_subcommand(args, config, BASE_DIR, console)
        args = build_parser().parse_args(argv)
        config = load_config(args.config)
        if args.show_config:
            console.print_json(config.model_dump_json())
            return EXIT_OK
        if not (args.all or args.priority is not None or args.resume is not None):
            build_parser().error("say which waves: --all, --priority N or --resume")
        if args.dry_run:
            return dry_run(args, config, console)
        return execute(args, config, console)
    except WorkforceError as exc:
        Console(stderr=True).print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: resume with --resume")
        return EXIT_INTERRUPTED


def dry_run(args: argparse.Namespace, config: WorkforceConfig, console: Console) -> int:
    workers_dir = Path(args.workers_dir or config.workers_dir)
    loaded = load_workers(workers_dir, config.planning)
    the_plan = plan(loaded, priority=args.priority)
    diagnostics = _diagnostics(loaded.diagnostics + the_plan.diagnostics, strict=args.strict)
    if args.json:
        print(json.dumps(plan_json(the_plan, len(loaded.instructions), diagnostics), indent=2))
    else:
        print_plan(console, the_plan, len(loaded.instructions), diagnostics)
    return EXIT_BAD_INPUT if any(d.severity == "error" for d in diagnostics) else EXIT_OK


def execute(args: argparse.Namespace, config: WorkforceConfig, console: Console) -> int:
    from orchestration.launcher import Launcher, LaunchOptions
    from orchestration.logs import configure_logging
    from orchestration.run_report import print_summary
    from orchestration.stores import open_stores

    configure_logging(_path(config.logs_dir), verbose=args.verbose)
    options = LaunchOptions(
        workers_dir=_path(args.workers_dir or config.workers_dir),
        target=_path(args.target or config.target),
        priority=args.priority,
        provider=args.provider,
        budget_usd=args.budget_usd,
        max_concurrency=args.max_concurrency,
        run_id=args.resume or args.run_id or None,
        resume=args.resume is not None,
        replan=args.replan,
    )
    with open_stores(config, BASE_DIR) as stores:
        launcher = Launcher(config, BASE_DIR, options, state=stores.state, knowledge=stores.knowledge,
                            retrospectives=stores.retrospectives, console=console)
        summary = asyncio.run(launcher.run())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_diagnostics(console, [d for d in launcher.diagnostics if d.severity == "error"])
        print_summary(console, summary)
    return EXIT_OK if summary["passed"] == summary["total"] else EXIT_FAILED


def _path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else BASE_DIR / path


def _diagnostics(diagnostics: list[Diagnostic], strict: bool) -> list[Diagnostic]:
    ordered = sorted(diagnostics, key=lambda d: (d.file, d.line))
    if not strict:
        return ordered
    return [d.model_copy(update={"severity": "error"}) for d in ordered]


if __name__ == "__main__":
    sys.exit(main())
