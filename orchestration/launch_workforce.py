"""Command line: plan and run a workforce of worker instructions.

    launch_workforce.py --all [--dry-run] [--json] [--strict] [--workers-dir DIR]
    launch_workforce.py --priority N [...]

Exit status: 0 success, 2 bad input (errors are printed as file:line: message), 1 a run that
did not pass every worker.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from orchestration.config import WorkforceConfig, load_config
from orchestration.errors import WorkforceError
from orchestration.instruction import Diagnostic
from orchestration.loader import load_workers
from orchestration.plan_report import plan_json, print_diagnostics, print_plan
from orchestration.planner import plan

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch-workforce", description=__doc__.split("\n\n")[0])
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--all", action="store_true", help="every wave, in ascending priority")
    scope.add_argument("--priority", type=int, metavar="N", help="only the wave of priority N")
    parser.add_argument("--dry-run", action="store_true", help="load and plan only; run nothing")
    parser.add_argument("--workers-dir", help="folder of WORKER_*.md files (default from config)")
    parser.add_argument("--config", help="configuration file (default config/workforce.yaml)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--show-config", action="store_true", help="print the effective configuration")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        config = load_config(args.config)
        if args.show_config:
            console.print_json(config.model_dump_json())
            return EXIT_OK
        if not (args.all or args.priority is not None):
            build_parser().error("say which waves: --all or --priority N")
        return dry_run(args, config, console)
    except WorkforceError as exc:
        Console(stderr=True).print(f"[red]error[/red] {exc}", highlight=False)
        return EXIT_BAD_INPUT


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


def _diagnostics(diagnostics: list[Diagnostic], strict: bool) -> list[Diagnostic]:
    ordered = sorted(diagnostics, key=lambda d: (d.file, d.line))
    if not strict:
        return ordered
    return [d.model_copy(update={"severity": "error"}) for d in ordered]


__all__ = ["main", "print_diagnostics"]

if __name__ == "__main__":
    sys.exit(main())
