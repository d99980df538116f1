"""Render a `WavePlan` for people (rich tables) and for programs (the `--json` shape)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from orchestration.instruction import Diagnostic
from orchestration.planner import WavePlan


def plan_json(plan: WavePlan, workers: int, diagnostics: list[Diagnostic]) -> dict[str, Any]:
    """`{"workers", "waves": [{"priority", "lanes"}], "errors", "warnings"}` exactly."""

    def shape(severity: str) -> list[dict[str, Any]]:
        return [
            {"file": d.file, "line": d.line, "message": d.message}
            for d in diagnostics
            if d.severity == severity
        ]

    return {
        "workers": workers,
        "waves": [
            {"priority": wave.priority, "lanes": [lane.workers for lane in wave.lanes]}
            for wave in plan.waves
        ],
        "errors": shape("error"),
        "warnings": shape("warning"),
    }


def print_plan(console: Console, plan: WavePlan, workers: int, diagnostics: list[Diagnostic]) -> None:
    """One table per wave: lanes, their workers, deliverables and classification."""
    for wave in plan.waves:
        table = Table(title=f"Wave {wave.priority}: {len(wave.workers)} workers in {len(wave.lanes)} lanes")
        table.add_column("Lane", justify="right")
        table.add_column("Worker")
        table.add_column("Deliverables")
        table.add_column("Class")
        for number, lane in enumerate(wave.lanes, start=1):
            for position, wid in enumerate(lane.workers):
                instruction = plan.instructions[wid]
                table.add_row(
                    str(number) if position == 0 else "",
                    wid,
                    ", ".join(instruction.deliverable_paths) or "—",
                    instruction.task_classification,
                    end_section=position == len(lane.workers) - 1,
                )
        console.print(table)
    print_diagnostics(console, diagnostics)
    errors = sum(d.severity == "error" for d in diagnostics)
    console.print(
        f"{workers} workers read, {len(plan.workers)} planned in {len(plan.waves)} waves; "
        f"{errors} errors, {len(diagnostics) - errors} warnings"
    )


def print_diagnostics(console: Console, diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        style = "red" if d.severity == "error" else "yellow"
        console.print(f"[{style}]{d.severity}[/{style}] {d.file}:{d.line}: {d.message}", markup=True, highlight=False, soft_wrap=True)
