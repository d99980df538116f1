"""`ValidationEngine`: a worker's result is accepted only if its own TEST_PROCESS passes and
what it wrote is code, not a guide.

A command fails on a non-zero exit or on an output line starting with `FAIL` or `❌` (real
instructions often end in `|| echo "FAIL: …"` and so exit 0 when they fail).
"""

from __future__ import annotations

import ast
import re
from pathlib import PurePosixPath

from orchestration.instruction import WorkerInstruction
from orchestration.records import TestOutcome
from orchestration.workdir import CommandResult, WorkDir

_FAIL_LINE = re.compile(r"^\s*(FAIL|❌)", re.MULTILINE)
_GUIDE_MARKERS = re.compile(
    r"(?im)^\s*(?:#+\s*|//\s*|[-*]\s*)?(?:\*\*)?(?:step\s+\d+\s*[:.)]|todo:?\s*implement\b"
    r"|implementation steps\b|here(?:'|’)s how (?:you|to)\b|you (?:should|would|can) (?:now )?"
    r"(?:create|add|implement|write)\b)"
)
CODE_SUFFIXES = frozenset({".py", ".sh", ".js", ".ts", ".go", ".rs", ".java", ".rb", ".php", ".c", ".cpp"})


def command_failed(result: CommandResult) -> bool:
    return result.timed_out or result.exit_code != 0 or bool(_FAIL_LINE.search(result.output))


class ValidationEngine:
    """Runs TEST_PROCESS commands in a work dir and judges what a worker wrote."""

    def __init__(self, command_timeout_s: float) -> None:
        self.command_timeout_s = command_timeout_s

    async def run_tests(self, instruction: WorkerInstruction, workdir: WorkDir) -> list[TestOutcome]:
        outcomes = []
        for test in instruction.test_commands:
            result = await workdir.run(test.command, self.command_timeout_s)
            outcomes.append(
                TestOutcome(
                    command=test.command,
                    passed=not command_failed(result),
                    exit_code=result.exit_code,
                    output_tail=result.tail(),
                    duration_s=round(result.duration_s, 3),
                    timed_out=result.timed_out,
                )
            )
        return outcomes

    @staticmethod
    def feedback(outcomes: list[TestOutcome]) -> str:
        """The failing commands and their output, for the next attempt's prompt."""
        failed = [o for o in outcomes if not o.passed]
        return "\n\n".join(
            f"$ {o.command}\n(exit {o.exit_code}{', timed out' if o.timed_out else ''})\n{o.output_tail[-1500:]}"
            for o in failed
        )


def detect_guide(files: dict[str, str], final_text: str = "") -> str | None:
    """Why the work looks like a guide instead of code, or None if it looks like real work."""
    code_files = {p: t for p, t in files.items() if PurePosixPath(p).suffix in CODE_SUFFIXES}
    for path, text in code_files.items():
        reason = _guide_in_file(path, text)
        if reason:
            return reason
    if not files and _GUIDE_MARKERS.search(final_text):
        return "wrote no files and replied with step-by-step instructions"
    return None


def _guide_in_file(path: str, text: str) -> str | None:
    markers = len(_GUIDE_MARKERS.findall(text))
    if not path.endswith(".py"):
        return f"{path} contains step-by-step prose instead of code" if markers >= 2 else None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        prose = sum(1 for line in text.splitlines() if _is_prose(line))
        if markers or prose >= 3:
            return f"{path} is prose, not Python (does not parse; {markers} guide markers)"
        return None
    if markers and not _has_real_code(tree):
        return f"{path} has guide markers and no implementation"
    return None


def _is_prose(line: str) -> bool:
    words = line.split()
    return len(words) >= 6 and line.strip()[-1:] in ".:" and not line.lstrip().startswith("#")


def _has_real_code(tree: ast.Module) -> bool:
    """At least one function or statement that does more than pass / ... / a docstring."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = [n for n in node.body if not _trivial(n)]
            if body:
                return True
    top = [n for n in tree.body if not _trivial(n) and not isinstance(n, ast.Import | ast.ImportFrom)]
    return any(not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in top)


def _trivial(node: ast.stmt) -> bool:
    if isinstance(node, ast.Pass):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True
    return isinstance(node, ast.Raise) and "NotImplementedError" in ast.dump(node)
