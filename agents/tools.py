"""The four tools a worker gets, each confined to its `WorkDir`. Failures come back as text."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from autogen_core.tools import BaseTool, FunctionTool, ToolSchema
from pydantic import BaseModel

from orchestration.errors import ConfinementError
from orchestration.workdir import WorkDir

TOOL_NAMES = ("write_file", "read_file", "list_files", "run_command")


class WorkdirTool(FunctionTool):
    """A FunctionTool whose argument model and JSON schema are built once per tool name: every
    worker's tool of a name has the same signature, and pydantic model and schema generation
    per worker (and per model call, for the schema) is the costly part of a tool."""

    _schemas: ClassVar[dict[str, ToolSchema]] = {}
    _models: ClassVar[dict[str, tuple[inspect.Signature, type[BaseModel]]]] = {}

    def __init__(self, func: Callable[..., Any], description: str, name: str) -> None:
        cached = self._models.get(name)
        if cached is None:
            super().__init__(func, description, name)
            self._models[name] = (self._signature, self.args_type())
            return
        self._func, self._global_imports = func, []
        self._signature, args_model = cached
        self._has_cancellation_support = "cancellation_token" in self._signature.parameters
        BaseTool.__init__(self, args_model, self._signature.return_annotation, name, description, False)

    @property
    def schema(self) -> ToolSchema:
        cached = self._schemas.get(self.name)
        if cached is None:
            cached = self._schemas[self.name] = super().schema
        return cached


def workdir_tools(workdir: WorkDir, command_timeout_s: float) -> list[WorkdirTool]:
    """write_file / read_file / list_files / run_command bound to one work dir."""

    async def write_file(
        path: Annotated[str, "file path relative to the work dir, e.g. pkg/module.py"],
        content: Annotated[str, "the complete new content of the file"],
    ) -> str:
        """Create or overwrite a file with the given content."""
        try:
            workdir.write(path, content)
        except (ConfinementError, OSError) as exc:
            return f"error: {exc}"
        return f"wrote {path} ({len(content)} characters)"

    async def read_file(path: Annotated[str, "file path relative to the work dir"]) -> str:
        """Return a file's content."""
        try:
            return workdir.read(path)
        except FileNotFoundError:
            return f"error: {path} does not exist"
        except (ConfinementError, OSError) as exc:
            return f"error: {exc}"

    async def list_files(path: Annotated[str, "folder relative to the work dir"] = ".") -> str:
        """List the files below a folder of the work dir."""
        try:
            return "\n".join(workdir.listing(path)) or "(no files)"
        except (ConfinementError, OSError) as exc:
            return f"error: {exc}"

    async def run_command(command: Annotated[str, "a bash command, run in the work dir"]) -> str:
        """Run a shell command in the work dir and return its exit code and output."""
        try:
            result = await workdir.run(command, command_timeout_s)
        except ConfinementError as exc:
            return f"error: {exc}"
        status = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        return f"{status}\n{result.tail()}"

    functions = (write_file, read_file, list_files, run_command)
    return [WorkdirTool(f, description=(f.__doc__ or "").strip(), name=f.__name__) for f in functions]
