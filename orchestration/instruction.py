"""`WorkerInstruction`: one parsed `WORKER_*.md` file, and the diagnostics found while reading it."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field

FRAMEWORK_SECTIONS: tuple[str, ...] = (
    "DELIVERABLES",
    "SUCCESS_CRITERIA",
    "BOUNDARIES",
    "DEPENDENCIES",
    "MITIGATION",
    "TEST_PROCESS",
    "TEST_RESULTS_FORMAT",
    "TASK_CLASSIFICATION",
    "RETROSPECTIVE",
    "PERFORMANCE_REQUIREMENTS",
)
"""The ten framework sections, in their canonical order (a collapsed `## 3-5.` header names 3–5)."""

EXTRA_SECTIONS: tuple[str, ...] = (
    "RESOURCE_REQUIREMENTS",
    "RISK_ASSESSMENT",
    "QUALITY_METRICS",
    "IMPLEMENTATION_NOTES",
)
REQUIRED_SECTIONS: tuple[str, ...] = ("DELIVERABLES", "TEST_PROCESS")
CLASSIFICATIONS: tuple[str, ...] = ("MECHANICAL", "CREATIVE", "HYBRID")


class Diagnostic(BaseModel):
    """An error or warning about one instruction file, at a 1-based line."""

    file: str
    line: int
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


class Section(BaseModel):
    """One recognised section: canonical name, raw body text and where it sits."""

    name: str
    title: str
    text: str
    start_line: int
    """The header's line."""
    end_line: int
    collapsed: bool = False
    """Named only by a collapsed header such as `## 3-5. [Standard sections]`."""


class TestCommand(BaseModel):
    """One shell command from a TEST_PROCESS fenced block (multi-line commands kept whole)."""

    command: str
    line: int


class WorkerInstruction(BaseModel):
    """Everything the launcher needs from one instruction file."""

    worker_id: str
    title: str
    source: str
    content_hash: str
    priority: int
    priority_rule: str
    """Which rule decided the priority, e.g. `explicit`, `phase 1.1 → 1`, `default`."""
    phase: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    """`**Key:** value` lines of the header."""
    sections: dict[str, Section] = Field(default_factory=dict)
    deliverables: list[str] = Field(default_factory=list)
    deliverable_paths: list[str] = Field(default_factory=list)
    """Normalised relative POSIX paths the worker creates or modifies."""
    boundary_paths: list[str] = Field(default_factory=list)
    """Further paths BOUNDARIES allows it to touch (e.g. a package `__init__.py`)."""
    success_criteria: list[str] = Field(default_factory=list)
    boundaries: str = ""
    dependencies: list[str] = Field(default_factory=list)
    dependency_lines: dict[str, int] = Field(default_factory=dict)
    mitigation: str = ""
    test_commands: list[TestCommand] = Field(default_factory=list)
    test_results_format: str = ""
    task_classification: str = "UNSPECIFIED"
    """MECHANICAL, CREATIVE, HYBRID, another upper-case word as written, or UNSPECIFIED."""
    task_classification_raw: str = ""
    retrospective: str = ""
    performance_requirements: str = ""
    resource_requirements: str = ""
    risk_assessment: str = ""
    quality_metrics: str = ""
    implementation_notes: str = ""
    llm_provider: str | None = None
    """The `**LLM Provider:**` header, which overrides routing by classification."""
    time_limit_s: float | None = None
    """A limit stated in PERFORMANCE_REQUIREMENTS (degradation limit, else the target)."""

    def allowed_paths(self) -> list[str]:
        """DELIVERABLES and BOUNDARIES paths, plus the package `__init__.py` files above Python ones."""
        paths = self.deliverable_paths + self.boundary_paths
        packages = [
            f"{parent.as_posix()}/__init__.py"
            for path in paths
            if path.endswith(".py")
            for parent in PurePosixPath(path).parents
            if parent.as_posix() != "."
        ]
        return list(dict.fromkeys(paths + packages))

    def section_text(self, name: str) -> str:
        section = self.sections.get(name)
        return section.text if section else ""
