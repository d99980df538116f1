"""`WorkforceWorker`: an AutoGen AssistantAgent built from one `WorkerInstruction`.

Its model context holds only its own task, its own tool traffic and what it is deliberately
given (its lane predecessor's summary, similar passed work, lessons, a retry's failures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from autogen_agentchat.agents import AssistantAgent
from autogen_core.models import ChatCompletionClient

from agents.tools import workdir_tools
from orchestration.instruction import WorkerInstruction
from orchestration.workdir import WorkDir

AUTONOMY_RULES = """\
Rules:
- Write working code into the files with write_file. Never answer with a guide, a plan,
  "Step 1: …" instructions or "TODO: implement" placeholders: the files you write are the result.
- Do not ask for permission or confirmation; nobody will answer. Decide and act.
- Touch only the files named below. Paths are relative to your work dir, which is the project root.
- Run the test commands yourself with run_command before you finish, and fix what fails.
- Finish with one message that starts with "SUMMARY:" and says in 1-3 sentences what you built."""


@dataclass
class WorkerContext:
    """What a worker deliberately receives besides its instruction."""

    predecessor_summary: str = ""
    similar_work: str = ""
    lessons: list[str] = field(default_factory=list)
    seed_paths: list[str] = field(default_factory=list)
    """Target files it starts with besides its own: its dependencies' deliverables."""


def system_message(instruction: WorkerInstruction, context: WorkerContext) -> str:
    """The worker's standing orders: deliverables, boundaries, criteria, locations, rules."""
    files = instruction.deliverable_paths + [p for p in instruction.boundary_paths if p not in instruction.deliverable_paths]
    parts = [
        f"You are {instruction.worker_id}, an autonomous coding worker. Your task: {_task_title(instruction)}.",
        AUTONOMY_RULES,
        "Files you may write (exact paths, relative to the project root):\n"
        + "\n".join(f"- {p}" for p in files),
        _import_hint(instruction.deliverable_paths),
        "DELIVERABLES:\n" + instruction.section_text("DELIVERABLES"),
        "BOUNDARIES:\n" + (instruction.boundaries or "Only the files above."),
        "SUCCESS_CRITERIA:\n" + instruction.section_text("SUCCESS_CRITERIA"),
        "Your work is accepted only if every one of these commands passes when run from the "
        "project root (a command fails on a non-zero exit or an output line starting with FAIL):\n"
        + "\n".join(f"$ {c.command}" for c in instruction.test_commands),
    ]
    if instruction.implementation_notes:
        parts.append("IMPLEMENTATION NOTES:\n" + instruction.implementation_notes)
    if context.predecessor_summary:
        parts.append("The worker before you in your lane reported:\n" + context.predecessor_summary)
    if context.similar_work:
        parts.append("Similar work that passed its tests before (for reference):\n" + context.similar_work)
    if context.lessons:
        parts.append("Lessons from earlier workers:\n" + "\n".join(f"- {lesson}" for lesson in context.lessons))
    return "\n\n".join(p for p in parts if p.strip())


def _task_title(instruction: WorkerInstruction) -> str:
    """The title without a leading `WORKER_001:` / `Worker 1:`."""
    return re.sub(r"^\s*worker[\s_-]*\d+\s*[:.-]\s*", "", instruction.title, flags=re.IGNORECASE) or instruction.title


def _import_hint(paths: list[str]) -> str:
    modules = [p[:-3].replace("/", ".").removesuffix(".__init__") for p in paths if p.endswith(".py")]
    if not modules:
        return ""
    return (
        "The project root is on PYTHONPATH, so tests import these files as: "
        + ", ".join(f"`import {m}`" for m in modules)
        + ". Create package __init__.py files where a folder needs one."
    )


def task_message(instruction: WorkerInstruction, feedback: str = "") -> str:
    """The user turn that starts an attempt; a retry carries the failures it must fix."""
    task = f"Do the task of {instruction.worker_id} now: write the deliverables, run the tests, then reply SUMMARY."
    if feedback:
        task += "\n\nYour previous attempt was rejected. Fix these problems:\n" + feedback
    return task


class WorkforceWorker(AssistantAgent):
    """One instruction's agent: tools confined to its work dir, its own model client."""

    def __init__(
        self,
        instruction: WorkerInstruction,
        model_client: ChatCompletionClient,
        workdir: WorkDir,
        *,
        command_timeout_s: float,
        max_tool_rounds: int,
        context: WorkerContext | None = None,
    ) -> None:
        self.instruction = instruction
        self.workdir = workdir
        super().__init__(
            name=instruction.worker_id,
            model_client=model_client,
            tools=list(workdir_tools(workdir, command_timeout_s)),
            system_message=system_message(instruction, context or WorkerContext()),
            description=f"{instruction.worker_id}: {instruction.title}",
            reflect_on_tool_use=False,
            max_tool_iterations=max_tool_rounds,
        )
