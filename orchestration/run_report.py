"""Print a run's execution summary for people."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

_COLUMNS = ("total", "passed", "failed", "escalated", "skipped", "pending")


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title=f"Run {summary['run_id']}: {summary['status']}")
    table.add_column("Wave", justify="right")
    for column in _COLUMNS:
        table.add_column(column.capitalize(), justify="right")
    for wave in summary["waves"]:
        table.add_row(str(wave["priority"]), *(str(wave.get(c, 0)) for c in _COLUMNS))
    table.add_row("all", *(str(summary.get(c, 0)) for c in _COLUMNS), end_section=True)
    console.print(table)
    if summary.get("reason"):
        console.print(f"[red]aborted:[/red] {summary['reason']}", highlight=False)
    console.print(
        f"success rate {summary['success_rate']:.0%}, {summary['tokens']} tokens, "
        f"${summary['cost_usd']:.4f}, {summary['duration_s']:.1f}s",
        highlight=False,
    )
    console.print(f"target: {summary['target']}", highlight=False, soft_wrap=True)
