"""Deliverable paths: recognising them in prose and normalising them to relative POSIX form."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.errors import InstructionError
from orchestration.paths import looks_like_path, normalise_path

# A segment that can never be "." or ".." on its own: it starts with a letter, digit or "_".
SEGMENT = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}", fullmatch=True)
SEGMENTS = st.lists(SEGMENT, min_size=1, max_size=6)
SEPARATOR = st.sampled_from(["/", "\\", "//", "/./"])
DRIVE = st.from_regex(r"[A-Za-z]:", fullmatch=True)
EXAMPLES = settings(max_examples=100, deadline=None)


@st.composite
def relative_paths(draw: st.DrawFn) -> str:
    """Safe segments joined by assorted separators, maybe with `./` and `sub/..` detours."""
    segments = draw(SEGMENTS)
    parts: list[str] = []
    for segment in segments:
        if draw(st.booleans()):
            parts.append(".")
        if draw(st.booleans()):
            parts.extend([draw(SEGMENT), ".."])
        parts.append(segment)
    text = parts[0]
    for part in parts[1:]:
        text += draw(SEPARATOR) + part
    return text


@st.composite
def escaping_paths(draw: st.DrawFn) -> str:
    """Go down `d` folders, then up more than `d`, then anywhere."""
    down = draw(st.lists(SEGMENT, max_size=3))
    ups = [".."] * (len(down) + draw(st.integers(min_value=1, max_value=3)))
    after = draw(st.lists(SEGMENT, max_size=2))
    return draw(SEPARATOR).join([*down, *ups, *after])


@EXAMPLES
@given(relative_paths())
def test_normalised_relative_path_is_relative_clean_and_idempotent(raw: str) -> None:
    path = normalise_path(raw)

    assert not path.startswith("/")
    assert ".." not in path.split("/")
    assert "." not in path.split("/")
    assert "\\" not in path
    assert "//" not in path
    assert normalise_path(path) == path


@EXAMPLES
@given(SEGMENTS)
def test_backslashes_and_slashes_normalise_to_the_same_path(segments: list[str]) -> None:
    assert normalise_path("\\".join(segments)) == normalise_path("/".join(segments)) == "/".join(segments)


@EXAMPLES
@given(st.sampled_from(["/", "//", "~/", "~"]), SEGMENTS)
def test_absolute_and_home_paths_are_rejected(prefix: str, segments: list[str]) -> None:
    with pytest.raises(InstructionError, match="absolute"):
        normalise_path(prefix + "/".join(segments))


@EXAMPLES
@given(DRIVE, st.sampled_from(["\\", "/", ""]), SEGMENTS)
def test_windows_drive_paths_are_rejected(drive: str, separator: str, segments: list[str]) -> None:
    with pytest.raises(InstructionError, match="Windows drive"):
        normalise_path(drive + separator + "\\".join(segments))


@EXAMPLES
@given(escaping_paths())
def test_paths_escaping_with_dotdot_are_rejected(raw: str) -> None:
    assert posixpath.normpath(raw.replace("\\", "/")).startswith("..")
    with pytest.raises(InstructionError, match=r"escapes the target with '\.\.'"):
        normalise_path(raw)


@pytest.mark.parametrize("raw", ["", "  ", ".", "./", "pkg/.."])
def test_paths_that_name_no_file_are_rejected(raw: str) -> None:
    with pytest.raises(InstructionError, match="names no file"):
        normalise_path(raw)


def test_unc_share_path_is_rejected_as_absolute() -> None:
    with pytest.raises(InstructionError, match="absolute"):
        normalise_path(r"\\server\share\x.py")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(repo root)/validation/semantic_analyzer.py", "validation/semantic_analyzer.py"),
        ("(Project Root)/docs/x.md", "docs/x.md"),
        ("./pkg//sub/./mod.py", "pkg/sub/mod.py"),
        ("pkg\\sub\\mod.py", "pkg/sub/mod.py"),
        ("pkg/old/../mod.py", "pkg/mod.py"),
        ("  spaced.py  ", "spaced.py"),
    ],
)
def test_normalise_path_examples(raw: str, expected: str) -> None:
    assert normalise_path(raw) == expected


def test_repo_root_prefix_does_not_hide_an_escape() -> None:
    with pytest.raises(InstructionError, match="escapes"):
        normalise_path("(repo root)/../outside.py")


def test_rejection_message_quotes_the_raw_path() -> None:
    with pytest.raises(InstructionError) as caught:
        normalise_path("/Volumes/Data/x.py")
    assert "'/Volumes/Data/x.py'" in caught.value.message


@pytest.mark.parametrize(
    "token",
    [
        "pkg/mod.py",
        "mod.py",
        "docs/x.md",
        "(repo root)/validation/semantic_analyzer.py",
        "config/app.conf2",
        "C:\\x\\y.py",
        "/Volumes/Data/x.py",
        "../outside/y.py",
    ],
)
def test_looks_like_path_accepts_file_paths(token: str) -> None:
    assert looks_like_path(token)


@pytest.mark.parametrize(
    "token",
    [
        "Class.method",
        "analyzer.analyze",
        "https://example.com/a.py",
        "/route",
        "3.11",
        "e.g.",
        "README",
        "x/Makefile",
        "pip install x.py",
        "",
    ],
)
def test_looks_like_path_rejects_prose_and_code(token: str) -> None:
    assert not looks_like_path(token)
