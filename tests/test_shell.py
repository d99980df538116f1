"""Splitting TEST_PROCESS scripts into whole commands, with the line each one starts on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.shell import split_commands


def commands(script: str) -> list[str]:
    return [command for command, _line in split_commands(script)]


def test_comment_lines_between_commands_are_dropped() -> None:
    script = "# Test 1: file exists\ntest -f a.py\n\n  # indented comment\n#!/bin/bash\necho done\n"

    assert commands(script) == ["test -f a.py", "echo done"]


def test_a_trailing_comment_stays_with_its_command() -> None:
    assert commands("ls # don't list hidden files\npwd\n") == ["ls # don't list hidden files", "pwd"]


def test_hash_inside_quotes_or_words_is_not_a_comment() -> None:
    assert commands('echo "a # b"\ncurl http://x/#frag\n') == ['echo "a # b"', "curl http://x/#frag"]


def test_or_echo_fail_is_kept_with_its_command() -> None:
    script = 'test -f a.py && echo "PASS: exists" || echo "FAIL: missing a.py"\n'

    assert commands(script) == ['test -f a.py && echo "PASS: exists" || echo "FAIL: missing a.py"']


def test_multi_line_python_c_is_one_command_including_hash_lines() -> None:
    script = (
        'python3 -c "\n'
        "from pkg import thing\n"
        "# this hash line is Python, not a shell comment\n"
        "assert thing() == 'ok', 'it isn\\'t'\n"
        "print('PASS')\n"
        '" || echo "FAIL: import"\n'
        "echo after\n"
    )

    result = commands(script)

    assert result == [script.split("echo after")[0].strip(), "echo after"]


def test_multi_line_single_quoted_program_is_one_command() -> None:
    script = "python3 -c '\nprint(\"hi\")\n'\nls\n"

    assert commands(script) == ["python3 -c '\nprint(\"hi\")\n'", "ls"]


def test_escaped_double_quote_does_not_close_the_string() -> None:
    assert commands('echo "a \\" b"\nls\n') == ['echo "a \\" b"', "ls"]


def test_heredoc_body_is_part_of_its_command() -> None:
    script = "cat <<EOF > out.txt\nline one\n# not a comment\nEOF\necho after\n"

    assert commands(script) == ["cat <<EOF > out.txt\nline one\n# not a comment\nEOF", "echo after"]


def test_quoted_heredoc_body_with_unbalanced_parens_and_quotes() -> None:
    script = "python3 - <<'PY'\nprint(\"(\")\nx = 'don't'\nPY\nls\n"

    assert commands(script) == ["python3 - <<'PY'\nprint(\"(\")\nx = 'don't'\nPY", "ls"]


def test_dash_heredoc_ends_at_a_tab_indented_delimiter() -> None:
    assert commands("cat <<-END\n\tx\n\tEND\nls\n") == ["cat <<-END\n\tx\n\tEND", "ls"]


def test_two_heredocs_on_one_line_both_belong_to_the_command() -> None:
    assert commands("cat <<A <<B\na\nA\nb\nB\nls\n") == ["cat <<A <<B\na\nA\nb\nB", "ls"]


def test_here_string_is_not_a_heredoc() -> None:
    assert commands('grep x <<< "$v"\nls\n') == ['grep x <<< "$v"', "ls"]


def test_multi_line_for_loop_is_one_command() -> None:
    script = "for f in a.py b.py; do\n  # check each\n  test -f $f || echo \"FAIL: $f\"\ndone\nls\n"

    assert commands(script) == [
        "for f in a.py b.py; do\n  # check each\n  test -f $f || echo \"FAIL: $f\"\ndone",
        "ls",
    ]


def test_for_loop_with_do_on_its_own_line() -> None:
    assert commands("for f in a b\ndo\n  echo $f\ndone\nls\n") == ["for f in a b\ndo\n  echo $f\ndone", "ls"]


def test_one_line_loop_and_the_word_done_as_an_argument() -> None:
    script = "while read l; do echo $l; done < f\necho done\nls\n"

    assert commands(script) == ["while read l; do echo $l; done < f", "echo done", "ls"]


def test_nested_if_inside_for_is_one_command() -> None:
    script = "for x in 1 2; do\n  if [ $x = 1 ]; then\n    echo one\n  fi\ndone\nls\n"

    assert commands(script) == ["for x in 1 2; do\n  if [ $x = 1 ]; then\n    echo one\n  fi\ndone", "ls"]


def test_case_block_is_one_command() -> None:
    script = "case $x in\n  a) echo a;;\n  *) echo b;;\nesac\nls\n"

    assert commands(script) == ["case $x in\n  a) echo a;;\n  *) echo b;;\nesac", "ls"]


def test_backslash_continuation_joins_lines() -> None:
    assert commands("pytest \\\n  -q \\\n  tests/\nls\n") == ["pytest \\\n  -q \\\n  tests/", "ls"]


def test_lines_ending_in_and_or_pipe_continue() -> None:
    script = "make build &&\n  make test ||\n  echo FAIL\ncat x |\n  grep y\nls\n"

    assert commands(script) == ["make build &&\n  make test ||\n  echo FAIL", "cat x |\n  grep y", "ls"]


def test_subshell_and_command_substitution_over_lines() -> None:
    script = "(\n cd x\n ls\n)\nX=$(\n ls\n)\necho $X\n"

    assert commands(script) == ["(\n cd x\n ls\n)", "X=$(\n ls\n)", "echo $X"]


def test_brace_group_on_one_line() -> None:
    assert commands("{ echo a; echo b; } > out\nls\n") == ["{ echo a; echo b; } > out", "ls"]


def test_function_definition_is_one_command() -> None:
    assert commands("check() {\n  test -f a.py\n}\ncheck\n") == ["check() {\n  test -f a.py\n}", "check"]


def test_reserved_words_as_arguments_open_no_block() -> None:
    script = "echo PASS: do for each file\necho then if done\nls\n"

    assert commands(script) == ["echo PASS: do for each file", "echo then if done", "ls"]


def test_unterminated_quote_keeps_the_rest_as_one_command() -> None:
    assert commands('ls\npython3 -c "\nprint(1)\n') == ["ls", 'python3 -c "\nprint(1)']


def test_start_lines_are_offset_by_first_line() -> None:
    script = "# comment\n\nls\npython3 -c \"\nprint(1)\n\"\n\npwd\n"

    assert split_commands(script, first_line=20) == [
        ("ls", 22),
        ('python3 -c "\nprint(1)\n"', 23),
        ("pwd", 27),
    ]


def test_empty_and_comment_only_scripts_have_no_commands() -> None:
    assert split_commands("") == []
    assert split_commands("\n# only a comment\n   \n") == []


RESERVED = ["if", "then", "else", "fi", "for", "while", "do", "done", "case", "esac", "{", "}"]
COMMAND_NAME = st.sampled_from(["ls", "echo", "test", "grep", "pytest", "python3"])
ARGUMENT = st.one_of(st.from_regex(r"[a-z0-9./-]{1,8}", fullmatch=True), st.sampled_from(RESERVED))
SIMPLE = st.builds(lambda name, args: " ".join([name, *args]), COMMAND_NAME, st.lists(ARGUMENT, max_size=4))
FILLER = st.sampled_from(["", "   ", "# a comment", "  # indented comment"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.lists(FILLER, max_size=2), SIMPLE), max_size=8))
def test_simple_commands_come_back_in_order_at_their_lines(
    entries: list[tuple[list[str], str]],
) -> None:
    lines: list[str] = []
    expected: list[tuple[str, int]] = []
    for filler, command in entries:
        lines.extend(filler)
        lines.append(command)
        expected.append((command, len(lines)))

    assert split_commands("\n".join(lines)) == expected
