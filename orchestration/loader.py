"""Read `WORKER_*.md` instruction files into `WorkerInstruction`s, with file:line diagnostics.

The reader is tolerant of what real files do (numbered or bare headers in any case, collapsed
`## 3-5. [Standard sections]`, CRLF, a BOM, stray non-UTF-8 bytes, `**Type:**` outside its
section) and strict about what would make a run unsafe or ambiguous (no DELIVERABLES or
TEST_PROCESS, a deliverable path outside the target, duplicate ids, unknown dependencies).
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.config import PlanningConfig
from orchestration.errors import InstructionError
from orchestration.instruction import (
    CLASSIFICATIONS,
    EXTRA_SECTIONS,
    FRAMEWORK_SECTIONS,
    REQUIRED_SECTIONS,
    Diagnostic,
    Section,
    TestCommand,
    WorkerInstruction,
)
from orchestration.paths import looks_like_path, normalise_path
from orchestration.shell import split_commands

KNOWN_SECTIONS = frozenset(FRAMEWORK_SECTIONS + EXTRA_SECTIONS)
_ALIASES = {
    "TEST_PROCESSES": "TEST_PROCESS",
    "TESTING_PROCESS": "TEST_PROCESS",
    "TEST_RESULT_FORMAT": "TEST_RESULTS_FORMAT",
    "PERFORMANCE": "PERFORMANCE_REQUIREMENTS",
    "RETROSPECTIVES": "RETROSPECTIVE",
    "DELIVERABLE": "DELIVERABLES",
    "DEPENDENCY": "DEPENDENCIES",
    "BOUNDARY": "BOUNDARIES",
    "IMPLEMENTATION_NOTE": "IMPLEMENTATION_NOTES",
}
_SHELL_LANGUAGES = frozenset({"", "bash", "sh", "shell", "zsh", "console"})

_HEADER = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_NUMBERING = re.compile(r"^(\d+)(?:\s*[-–]\s*(\d+))?\s*[.):]?\s*")
_FIELD = re.compile(r"^\s*(?:[-*+]\s+)?\*\*([^*:]+?):?\*\*:?\s*(.*?)\s*$")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_FIELD_PATH = re.compile(r"(?:\((?:repo|project) root\)/)?\S+", re.IGNORECASE)
_WORKER_REF = re.compile(r"\bWORKER[_-]?(\d{1,4})(?:\s*[-–]\s*(?:WORKER[_-]?)?(\d{1,4}))?\b")
_WORKER_IN_NAME = re.compile(r"(?:WORKER|Worker|worker)[_\s-]?(\d{1,4})")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s*)?(?:[✅❌☐✔️]+\s*)?")
_DURATION_UNITS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_DEGRADATION = re.compile(r"degradation limit[^\n]*?>\s*(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)
_TARGET_TIME = re.compile(r"automated execution[^\n]*?<\s*(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)


def _latin1_fallback(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return bytes(bad).decode("cp1252", errors="replace"), error.end


codecs.register_error("workforce-cp1252", _latin1_fallback)


@dataclass
class LoadResult:
    """Every instruction that parsed, and what was found wrong, per file."""

    instructions: list[WorkerInstruction] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: int = 0
    invalid: set[str] = field(default_factory=set)
    """Worker ids that have errors and must not be planned."""

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def valid(self) -> list[WorkerInstruction]:
        return [i for i in self.instructions if i.worker_id not in self.invalid]


def load_workers(directory: str | Path, planning: PlanningConfig | None = None) -> LoadResult:
    """Load every `WORKER_*.md` in `directory` and check the set (duplicates, unknown deps)."""
    root = Path(directory)
    if not root.is_dir():
        raise InstructionError("workers directory not found", path=root)
    planning = planning or PlanningConfig()
    result = LoadResult()
    for path in sorted(root.glob("WORKER_*.md")):
        result.files += 1
        name = path.relative_to(root).as_posix()
        instruction, diagnostics = read_instruction(path, planning, display_name=name)
        result.diagnostics.extend(diagnostics)
        if instruction is None:
            continue
        result.instructions.append(instruction)
        if any(d.severity == "error" for d in diagnostics):
            result.invalid.add(instruction.worker_id)
    _check_duplicates(result)
    _check_dependencies(result)
    return result


def read_instruction(
    path: Path, planning: PlanningConfig, display_name: str | None = None
) -> tuple[WorkerInstruction | None, list[Diagnostic]]:
    """Parse one file; never raises for bad content (problems come back as diagnostics)."""
    name = display_name or path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Diagnostic(file=name, line=1, message=f"cannot read file: {exc.strerror}")]
    return _Parser(raw, path, name, planning).parse()


def _check_duplicates(result: LoadResult) -> None:
    first: dict[str, WorkerInstruction] = {}
    for instruction in result.instructions:
        seen = first.setdefault(instruction.worker_id, instruction)
        if seen is instruction:
            continue
        result.invalid.add(instruction.worker_id)
        result.diagnostics.append(
            Diagnostic(
                file=instruction.source,
                line=1,
                message=f"duplicate worker id {instruction.worker_id}: in {seen.source} and {instruction.source}",
            )
        )


def _check_dependencies(result: LoadResult) -> None:
    known = {i.worker_id for i in result.instructions}
    for instruction in result.instructions:
        for dep in instruction.dependencies:
            if dep not in known:
                result.invalid.add(instruction.worker_id)
                result.diagnostics.append(
                    Diagnostic(
                        file=instruction.source,
                        line=instruction.dependency_lines.get(dep, 1),
                        message=f"depends on unknown worker {dep}",
                    )
                )


def worker_id(number: str | int) -> str:
    """`7` → `WORKER_007` (at least three digits)."""
    return f"WORKER_{int(number):03d}"


def _decode(raw: bytes) -> tuple[str, int | None]:
    """Decode UTF-8 (BOM dropped); stray bytes are read as cp1252. Returns the first bad line."""
    body = raw[3:] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        head = body[: exc.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return body.decode("utf-8", errors="workforce-cp1252"), head.count(b"\n") + 1


@dataclass
class _Line:
    number: int
    text: str
    fenced: bool
    """Inside (or the fence line of) a fenced code block."""


@dataclass
class _Block:
    """A fenced code block: language and the 1-based line of its first content line."""

    language: str
    first_line: int
    text: str


class _Parser:
    def __init__(self, raw: bytes, path: Path, name: str, planning: PlanningConfig) -> None:
        self.raw = raw
        self.path = path
        self.name = name
        self.planning = planning
        self.diagnostics: list[Diagnostic] = []
        self.lines: list[_Line] = []
        self.blocks: list[tuple[int, _Block]] = []

    def error(self, line: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(file=self.name, line=line, message=message))

    def warn(self, line: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(file=self.name, line=line, message=message, severity="warning"))

    def parse(self) -> tuple[WorkerInstruction | None, list[Diagnostic]]:
        text, bad_line = _decode(self.raw)
        if bad_line is not None:
            self.warn(bad_line, "file is not valid UTF-8; undecodable bytes were read as cp1252")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text.strip():
            self.error(1, "file is empty")
            return None, self.diagnostics
        self._split_lines(text)
        title, sections, first_section_line = self._sections()
        fields = self._fields(end=first_section_line)
        wid = self._worker_id(fields, title)
        if wid is None:
            return None, self.diagnostics
        instruction = self._build(wid, title, fields, sections)
        return instruction, self.diagnostics

    # -- structure -------------------------------------------------------------------------
    def _split_lines(self, text: str) -> None:
        fence: str | None = None
        block: _Block | None = None
        body: list[str] = []
        for number, line in enumerate(text.split("\n"), start=1):
            match = _FENCE.match(line)
            if fence is None and match:
                fence = match.group(1)
                block, body = _Block(match.group(2).lower(), number + 1, ""), []
                self.lines.append(_Line(number, line, True))
                continue
            if fence is not None and line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
                if block is not None:
                    block.text = "\n".join(body)
                    self.blocks.append((number, block))
                self.lines.append(_Line(number, line, True))
                continue
            if fence is not None:
                body.append(line)
            self.lines.append(_Line(number, line, fence is not None))
        if fence is not None and block is not None:
            block.text = "\n".join(body)
            self.blocks.append((len(self.lines), block))
            self.warn(block.first_line - 1, "code fence is never closed")

    def _sections(self) -> tuple[str, dict[str, Section], int]:
        title = ""
        sections: dict[str, Section] = {}
        current: tuple[str, str, int, bool] | None = None
        first_section_line = len(self.lines) + 1
        bodies: dict[str, list[str]] = {}

        def close(end: int) -> None:
            if current is None:
                return
            name, header, start, collapsed = current
            sections[name] = Section(
                name=name, title=header, text="\n".join(bodies[name]).strip("\n"),
                start_line=start, end_line=end, collapsed=collapsed,
            )

        for line in self.lines:
            match = None if line.fenced else _HEADER.match(line.text)
            if match:
                level, header = len(match.group(1)), match.group(2)
                if level == 1 and not title and current is None:
                    title = header
                    continue
                names = self._section_names(header, level)
                if names is not None:
                    close(line.number - 1)
                    current = None
                    first_section_line = min(first_section_line, line.number)
                    for index, name in enumerate(names):
                        if name in sections:
                            self.warn(line.number, f"section {name} appears again; the later one is used")
                        collapsed = len(names) > 1 or name not in header.upper().replace(" ", "_")
                        if index < len(names) - 1:
                            sections[name] = Section(
                                name=name, title=header, text="", start_line=line.number,
                                end_line=line.number, collapsed=True,
                            )
                        else:
                            current = (name, header, line.number, collapsed and self._is_collapsed(header))
                            bodies[name] = []
                    continue
            if current is not None:
                bodies[current[0]].append(line.text)
        close(len(self.lines))
        return title, sections, first_section_line

    @staticmethod
    def _is_collapsed(header: str) -> bool:
        return _canonical(_NUMBERING.sub("", header)) not in KNOWN_SECTIONS

    def _section_names(self, header: str, level: int) -> list[str] | None:
        """Canonical section name(s) a header opens, or None if it opens no section."""
        numbering = _NUMBERING.match(header)
        name = _canonical(_NUMBERING.sub("", header))
        if name in KNOWN_SECTIONS:
            return [name]
        if numbering and level >= 2:
            low = int(numbering.group(1))
            high = int(numbering.group(2) or low)
            bracketed = header[numbering.end():].lstrip().startswith("[") or "STANDARD" in name
            if bracketed and 1 <= low <= high <= len(FRAMEWORK_SECTIONS):
                return list(FRAMEWORK_SECTIONS[low - 1 : high])
        if level == 2 and name:
            return [name]
        return None

    def _fields(self, end: int) -> dict[str, str]:
        fields: dict[str, str] = {}
        for line in self.lines:
            if line.number >= end:
                break
            match = None if line.fenced else _FIELD.match(line.text)
            if match:
                fields.setdefault(match.group(1).strip(), match.group(2).strip())
        return fields

    def _field_line(self, key: str) -> int:
        for line in self.lines:
            match = None if line.fenced else _FIELD.match(line.text)
            if match and match.group(1).strip() == key:
                return line.number
        return 1

    # -- identity and priority ---------------------------------------------------------------
    def _worker_id(self, fields: dict[str, str], title: str) -> str | None:
        candidates = [
            ("the **Worker ID:** line", fields.get("Worker ID", "")),
            ("the file name", self.path.name),
            ("the title", title),
        ]
        found = [(source, m.group(1)) for source, text in candidates if (m := _WORKER_IN_NAME.search(text))]
        if not found:
            self.error(1, "no worker id: name the file WORKER_NNN_*.md or add a **Worker ID:** line")
            return None
        source, number = found[0]
        for other_source, other in found[1:]:
            if int(other) != int(number) and other_source != "the title":
                self.warn(1, f"worker id {worker_id(number)} from {source} differs from "
                             f"{worker_id(other)} in {other_source}; using {worker_id(number)}")
        return worker_id(number)

    def _priority(self, fields: dict[str, str]) -> tuple[int, str, str | None]:
        phase = fields.get("Phase")
        explicit = fields.get("Priority")
        if explicit:
            match = re.match(r"\s*P?(\d+)", explicit)
            value = int(match.group(1)) if match else 0
            if 1 <= value <= self.planning.max_priority:
                return value, "explicit", phase
            self.warn(self._field_line("Priority"),
                      f"**Priority:** {explicit!r} is not 1–{self.planning.max_priority}; ignored")
        if phase:
            match = re.match(r"\s*(\d+)", phase)
            if match:
                major = int(match.group(1))
                mapping = self.planning.phase_priority
                value = mapping.get(major, self.planning.max_priority if major > max(mapping, default=0) else
                                    self.planning.default_priority)
                return value, f"phase {phase.split(' ')[0]} → {value}", phase
            self.warn(self._field_line("Phase"), f"**Phase:** {phase!r} has no phase number")
        return self.planning.default_priority, "default", phase

    # -- content --------------------------------------------------------------------------
    def _build(
        self, wid: str, title: str, fields: dict[str, str], sections: dict[str, Section]
    ) -> WorkerInstruction:
        for name in REQUIRED_SECTIONS:
            if name not in sections or sections[name].collapsed:
                self.error(1, f"{name} section is missing")
        missing = [n for n in FRAMEWORK_SECTIONS if n not in sections and n not in REQUIRED_SECTIONS]
        if missing:
            self.warn(1, f"missing sections: {', '.join(missing)}")
        priority, rule, phase = self._priority(fields)
        dependencies, dependency_lines = self._dependencies(wid, fields, sections)
        classification, raw_class = self._classification(sections)
        text = {name: section.text for name, section in sections.items()}
        return WorkerInstruction(
            worker_id=wid,
            title=title or self.path.stem,
            source=self.name,
            content_hash=hashlib.sha256(self.raw).hexdigest(),
            priority=priority,
            priority_rule=rule,
            phase=phase,
            fields=fields,
            sections=sections,
            deliverables=self._items(sections.get("DELIVERABLES")),
            deliverable_paths=self._deliverable_paths(sections),
            boundary_paths=self._boundary_paths(sections.get("BOUNDARIES")),
            success_criteria=self._items(sections.get("SUCCESS_CRITERIA")),
            boundaries=text.get("BOUNDARIES", ""),
            dependencies=dependencies,
            dependency_lines=dependency_lines,
            mitigation=text.get("MITIGATION", ""),
            test_commands=self._test_commands(sections.get("TEST_PROCESS")),
            test_results_format=text.get("TEST_RESULTS_FORMAT", ""),
            task_classification=classification,
            task_classification_raw=raw_class,
            retrospective=text.get("RETROSPECTIVE", ""),
            performance_requirements=text.get("PERFORMANCE_REQUIREMENTS", ""),
            resource_requirements=text.get("RESOURCE_REQUIREMENTS", ""),
            risk_assessment=text.get("RISK_ASSESSMENT", ""),
            quality_metrics=text.get("QUALITY_METRICS", ""),
            implementation_notes=text.get("IMPLEMENTATION_NOTES", ""),
            llm_provider=(fields.get("LLM Provider") or "").strip().lower() or None,
            time_limit_s=_time_limit(text.get("PERFORMANCE_REQUIREMENTS", "")),
        )

    def _section_lines(self, section: Section | None) -> Iterable[_Line]:
        if section is None:
            return []
        return self.lines[section.start_line : section.end_line]

    def _items(self, section: Section | None) -> list[str]:
        items = []
        for line in self._section_lines(section):
            if not line.fenced and _BULLET.match(line.text):
                item = _BULLET.sub("", line.text).strip()
                if item:
                    items.append(item)
        return items

    def _spans(self, section: Section | None) -> Iterable[tuple[int, str]]:
        for line in self._section_lines(section):
            if line.fenced:
                continue
            for span in _CODE_SPAN.findall(line.text):
                yield line.number, span
            field_match = _FIELD.match(line.text)
            if field_match and "path" in field_match.group(1).lower() and "`" not in field_match.group(2):
                value = _FIELD_PATH.match(field_match.group(2))
                yield line.number, value.group(0) if value else ""

    def _deliverable_paths(self, sections: dict[str, Section]) -> list[str]:
        known_full = self._full_paths()
        paths: list[str] = []
        for number, token in self._spans(sections.get("DELIVERABLES")):
            if not looks_like_path(token):
                continue
            try:
                path = normalise_path(token)
            except InstructionError as exc:
                self.error(number, exc.message)
                continue
            if "/" not in path:
                path = _resolve_bare(path, known_full)
            if path not in paths:
                paths.append(path)
        if "DELIVERABLES" in sections and not paths:
            self.warn(sections["DELIVERABLES"].start_line, "DELIVERABLES names no file path")
        return paths

    def _full_paths(self) -> list[str]:
        """Relative paths with a folder mentioned anywhere in prose (to place bare file names)."""
        found = []
        for line in self.lines:
            if line.fenced:
                continue
            for span in _CODE_SPAN.findall(line.text):
                if "/" in span and looks_like_path(span):
                    try:
                        found.append(normalise_path(span))
                    except InstructionError:
                        continue
        return found

    def _boundary_paths(self, section: Section | None) -> list[str]:
        """Paths the BOUNDARIES section allows (lines that do not say CANNOT / NOT / NEVER)."""
        allowed: list[str] = []
        for line in self._section_lines(section):
            if line.fenced or re.search(r"\b(CANNOT|NOT|NEVER|DON'T)\b", line.text, re.IGNORECASE):
                continue
            for span in _CODE_SPAN.findall(line.text):
                if looks_like_path(span):
                    try:
                        path = normalise_path(span)
                    except InstructionError:
                        continue
                    if "/" in path and path not in allowed:
                        allowed.append(path)
        return allowed

    def _dependencies(
        self, wid: str, fields: dict[str, str], sections: dict[str, Section]
    ) -> tuple[list[str], dict[str, int]]:
        sources: list[tuple[int, str]] = []
        if "Dependencies" in fields:
            sources.append((self._field_line("Dependencies"), fields["Dependencies"]))
        sources.extend((line.number, line.text) for line in self._section_lines(sections.get("DEPENDENCIES")))
        lines: dict[str, int] = {}
        for number, text in sources:
            for match in _WORKER_REF.finditer(text):
                low = int(match.group(1))
                high = int(match.group(2)) if match.group(2) else low
                for value in range(low, (high if high >= low else low) + 1):
                    dep = worker_id(value)
                    if dep != wid:
                        lines.setdefault(dep, number)
        return sorted(lines), lines

    def _classification(self, sections: dict[str, Section]) -> tuple[str, str]:
        raw = self._type_field(sections.get("TASK_CLASSIFICATION")) or self._type_field(None)
        if raw is None:
            text = sections["TASK_CLASSIFICATION"].text if "TASK_CLASSIFICATION" in sections else ""
            word = next((c for c in CLASSIFICATIONS if re.search(rf"\b{c}\b", text, re.IGNORECASE)), None)
            return (word, text.strip()[:200]) if word else ("UNSPECIFIED", "")
        match = re.match(r"\W*([A-Za-z][\w-]*)", raw)
        word = match.group(1).upper() if match else "UNSPECIFIED"
        return word, raw

    def _type_field(self, section: Section | None) -> str | None:
        lines = self._section_lines(section) if section is not None else self.lines
        for line in lines:
            match = None if line.fenced else _FIELD.match(line.text)
            if match and match.group(1).strip().lower() in ("type", "classification", "task type"):
                return match.group(2)
        return None

    def _test_commands(self, section: Section | None) -> list[TestCommand]:
        if section is None:
            return []
        commands: list[TestCommand] = []
        for _end, block in self.blocks:
            if not section.start_line < block.first_line <= section.end_line:
                continue
            if block.language not in _SHELL_LANGUAGES:
                continue
            for command, line in split_commands(block.text, first_line=block.first_line):
                commands.append(TestCommand(command=command, line=line))
        if not commands and not section.collapsed:
            self.warn(section.start_line, "TEST_PROCESS has no fenced shell commands to run")
        return commands


def _canonical(header: str) -> str:
    name = re.sub(r"[^A-Z0-9]+", "_", header.upper().replace("*", "").replace("`", "")).strip("_")
    return _ALIASES.get(name, name)


def _resolve_bare(name: str, full_paths: list[str]) -> str:
    """Place a bare `file.py` at the one folder the instruction mentions it under, if any."""
    matches = sorted({p for p in full_paths if p.endswith("/" + name)})
    return matches[0] if len(matches) == 1 else name


def _time_limit(performance: str) -> float | None:
    for pattern in (_DEGRADATION, _TARGET_TIME):
        match = pattern.search(performance)
        if match:
            unit = match.group(2).lower().rstrip("s") or "s"
            for prefix, factor in _DURATION_UNITS.items():
                if unit.startswith(prefix) and (unit == prefix or len(prefix) > 1):
                    return float(match.group(1)) * factor
    return None
