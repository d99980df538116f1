"""The read-only subcommands: `status`, `similar`, `retrospectives search`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestration.config import WorkforceConfig
from orchestration.errors import StateError
from orchestration.protocols import StateStore
from orchestration.records import RunRecord
from orchestration.stores import open_stores


def run_subcommand(args: argparse.Namespace, config: WorkforceConfig, base_dir: Path, console: Console) -> int:
    if args.command == "status":
        with open_stores(config, base_dir, knowledge=False, retrospectives=False) as stores:
            report = status_report(stores.state, args.run_id)
        _show(console, report, args.json, _print_status)
        return 0
    if args.command == "similar":
        with open_stores(config, base_dir, retrospectives=False) as stores:
            if stores.knowledge is None:
                raise StateError("the knowledge store is disabled in the configuration")
            hits = [h.model_dump() for h in stores.knowledge.similar(args.text, args.k, args.status)]
        _show(console, hits, args.json, _print_hits)
        return 0
    with open_stores(config, base_dir, knowledge=False) as stores:
        if stores.retrospectives is None:
            raise StateError("retrospectives are switched off in the configuration")
        found = stores.retrospectives.search(args.text, args.k)
    _show(console, found, args.json, _print_retrospectives)
    return 0


def status_report(state: StateStore, run_id: str | None) -> dict[str, Any]:
    """Per-wave counts, running workers with their age, failures with reasons, cost, duration."""
    run_id = run_id or state.latest_run_id()
    if run_id is None:
        raise StateError("there are no runs in the state store yet")
    run = state.get_run(run_id)
    if run is None:
        raise StateError(f"run {run_id} is not in the state store")
    workers = state.workers(run_id)
    now = time.time()
    waves = []
    for wave in run.waves:
        ids = [w for lane in wave["lanes"] for w in lane]
        counts: dict[str, int] = {}
        for wid in ids:
            status = workers[wid].status if wid in workers else "pending"
            counts[status] = counts.get(status, 0) + 1
        waves.append({"priority": wave["priority"], "total": len(ids), **counts})
    return {
        "run_id": run_id,
        "status": run.status,
        "reason": run.reason,
        "target": run.target,
        "waves": waves,
        "running": [{"worker_id": w.worker_id, "age_s": round(now - w.started_at, 1), "attempt": w.attempt,
                     "provider": w.provider} for w in workers.values() if w.status == "running"],
        "failures": [{"worker_id": w.worker_id, "status": w.status, "reason": w.error}
                     for w in workers.values() if w.status in ("failed", "escalated", "skipped")],
        "cost_usd": round(sum(w.cost_usd for w in workers.values()), 6),
        "tokens": sum(w.tokens for w in workers.values()),
        "duration_s": round(_duration(run, workers.values()), 1),
    }


def _duration(run: RunRecord, workers: Any) -> float:
    ends = [w.finished_at for w in workers if w.finished_at] + [run.updated_at]
    return max(ends) - run.created_at if ends else 0.0


def _show(console: Console, data: Any, as_json: bool, printer: Any) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))  # noqa: T201 - machine output
    else:
        printer(console, data)


def _print_status(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"Run {report['run_id']}: {report['status']}")
    columns = ("total", "pending", "running", "passed", "failed", "escalated", "skipped")
    table.add_column("Wave", justify="right")
    for column in columns:
        table.add_column(column.capitalize(), justify="right")
    for wave in report["waves"]:
        table.add_row(str(wave["priority"]), *(str(wave.get(c, 0)) for c in columns))
    console.print(table)
    for item in report["running"]:
        console.print(f"running {item['worker_id']} for {item['age_s']:.0f}s (attempt {item['attempt']}, "
                      f"{item['provider']})", highlight=False)
    for item in report["failures"]:
        console.print(f"{item['status']} {item['worker_id']}: {item['reason']}", highlight=False, soft_wrap=True)
    console.print(f"cost ${report['cost_usd']:.4f}, {report['tokens']} tokens, {report['duration_s']:.0f}s",
                  highlight=False)
    if report["reason"]:
        console.print(f"reason: {report['reason']}", highlight=False)


def _print_hits(console: Console, hits: list[dict[str, Any]]) -> None:
    if not hits:
        console.print("no similar work found")
    for hit in hits:
        first = hit["text"].strip().splitlines()[0] if hit["text"].strip() else ""
        console.print(f"{hit['distance']:.3f} {hit['worker_id']} [{hit['kind']}, {hit['status']}] {first[:100]}",
                      highlight=False, markup=False)


def _print_retrospectives(console: Console, found: list[dict[str, Any]]) -> None:
    if not found:
        console.print("no retrospectives found")
    for item in found:
        score = item.get("score")
        prefix = f"{score:.3f} " if isinstance(score, int | float) else ""
        console.print(prefix + str(item.get("memory", "")), highlight=False, markup=False, soft_wrap=True)
