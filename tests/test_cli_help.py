"""``--help`` of every command: examples that parse and survive any terminal width, plain
argument names, and help on every option."""

from __future__ import annotations

import shlex

import pytest
import typer
from typer.testing import CliRunner

try:  # typer >= 0.26 vendors click
    from typer._click.exceptions import BadParameter, UsageError
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import BadParameter, UsageError

from avscene.cli.app import app

COMMANDS = sorted(typer.main.get_command(app).commands)


def _command(name: str):  # noqa: ANN202 - a click Command
    return typer.main.get_command(app).commands[name]


def _help(name: str, columns: int) -> str:
    r = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": str(columns)})
    assert r.exit_code == 0, r.output
    return r.output


def _example_lines(name: str) -> list[str]:
    """The ``avscene ...`` lines of the command's epilog, as written."""
    epilog = _command(name).epilog or ""
    return [line.strip() for line in epilog.splitlines() if line.strip().startswith("avscene ")]


@pytest.mark.parametrize("name", COMMANDS)
def test_examples_are_shown_as_written_at_any_width(name):
    examples = _example_lines(name)
    assert examples, f"{name} --help has no example"
    for columns in (40, 80, 200):
        shown = [line.strip() for line in _help(name, columns).splitlines()]
        missing = [e for e in examples if e not in shown]
        assert not missing, f"COLUMNS={columns}: rewrapped examples {missing}"


@pytest.mark.parametrize("name", COMMANDS)
def test_examples_parse(name, tmp_path, monkeypatch):
    """Each example's arguments are accepted by the command's parser (in an empty folder, so only
    value checks such as 'file exists' may complain, never the number or names of arguments)."""
    monkeypatch.chdir(tmp_path)
    for line in _example_lines(name):
        for cmd, args in _avscene_calls(line.split("  (")[0]):  # without a trailing "(comment)"
            assert cmd in COMMANDS, line
            try:
                _command(cmd).make_context(cmd, args)
            except BadParameter:
                pass  # e.g. a path that does not exist here
            except UsageError as e:
                pytest.fail(f"{line!r}: {e.format_message()}")


def _avscene_calls(line: str) -> list[tuple[str, list[str]]]:
    """The ``avscene CMD ARGS`` calls of a shell line (split at ``|``, ``&&``, ``;``)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    calls, words = [], []
    for token in [*lexer, ";"]:
        if token in ("|", "&&", ";", "||"):
            if words[:1] == ["avscene"]:
                calls.append((words[1], words[2:]))
            words = []
        else:
            words.append(token)
    return calls


@pytest.mark.parametrize("name", COMMANDS)
def test_usage_names_arguments_plainly(name):
    text = _help(name, 100)
    usage = text.splitlines()[0]
    assert "{" not in usage and "<" not in usage, usage
    assert "list[" not in text and "<path>..." not in text


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help(name):
    bare = [p.opts[0] for p in _command(name).params
            if p.param_type_name == "option" and not (p.help or "").strip()]
    assert not bare, f"{name}: options without help: {bare}"
