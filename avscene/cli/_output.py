"""One output sink per command run: a rich table, ``--json`` or ``--jsonl -`` on stdout, and a JSONL file.

Results go to stdout; progress bars and per-input error lines go to stderr, so
``--json``/``--jsonl -`` output can be piped straight into other tools. With
``--jsonl FILE`` every record is also appended to FILE as soon as it arrives
(:class:`avscene.tasks.runner.ResultLog`: one write + fsync per line).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from avscene.results import json_text, printable

if TYPE_CHECKING:
    from avscene.tasks.runner import ResultLog


class Result(Protocol):
    ok: bool
    file: str

    def to_json(self) -> dict[str, Any]: ...


PIPE_WIDTH = 10_000  # table width when stdout is not a terminal (wide enough for any path)


class Sink:
    """Collects results and renders them in the chosen mode."""

    def __init__(self, *, mode: str, table: Callable[[list[Result]], Table] | None = None,
                 log: ResultLog | None = None):
        if mode not in ("table", "json", "jsonl"):
            raise ValueError(mode)
        self.mode = mode
        self.table = table
        self.log = log  # the --jsonl FILE, if any
        self.results: list[Result] = []
        self.out = Console(soft_wrap=True)
        if not self.out.is_terminal:  # a pipe or a file: never fold cells at an assumed width
            self.out.width = PIPE_WIDTH
        self.err = Console(stderr=True, soft_wrap=True)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.results)

    def add(self, r: Result) -> None:
        from avscene.tasks.limits import interrupts_held

        with interrupts_held():  # the durable record and the count of done inputs agree
            if self.log is not None:
                self.log.append(r.to_json())
            self.results.append(r)
        if not r.ok:
            msg = r.to_json()["error"]
            msg = msg if msg.startswith(r.file) else f"{r.file}: {msg}"
            self.err.print(printable(f"avscene: failed: {msg}"), markup=False, highlight=False)
        else:  # e.g. a missing stream: the result is partial, so say so where a person looks
            for w in r.to_json().get("warnings", []):
                self.err.print(printable(f"avscene: warning: {r.file}: {w}"), markup=False, highlight=False)
        if self.mode == "jsonl":
            sys.stdout.write(json_text(r.to_json()) + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        if self.mode == "json":
            sys.stdout.write(json_text([r.to_json() for r in self.results], indent=2) + "\n")
        elif self.mode == "table" and self.table is not None:
            ok = [r for r in self.results if r.ok]
            if ok:  # a file name's bytes that are not UTF-8 show as \xff (and the columns fit them)
                with self.out.capture() as text:
                    self.out.print(self.table([_Shown(r) for r in ok]))
                sys.stdout.write(printable(text.get()))
                sys.stdout.flush()
        if self.failed and self.mode == "table":
            self.err.print(f"{self.failed} of {len(self.results)} input(s) failed", style="red")


class _Shown:
    """A result as a table shows it: every text attribute :func:`~avscene.results.printable`."""

    def __init__(self, result: Result) -> None:
        self._result = result

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._result, name)
        return printable(value) if isinstance(value, str) else value


def output_mode(json_flag: bool, jsonl: str | None) -> str:
    """What stdout shows: ``json`` (--json), ``jsonl`` (--jsonl -) or ``table``."""
    from avscene.errors import UsageError

    if json_flag and jsonl == "-":
        raise UsageError("--json and --jsonl - are exclusive (both print on stdout): choose one, or give "
                         "--jsonl a file")
    return "json" if json_flag else "jsonl" if jsonl == "-" else "table"


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr (only for several inputs); yields an ``advance()`` callable."""
    if total <= 1:
        yield lambda: None
        return
    bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def drain(results: Iterable[Result], sink: Sink, *, total: int, label: str) -> None:
    with progress(total, label) as advance:
        for r in results:
            sink.add(r)
            advance()
    sink.close()


def check_report_path(json_out, *, force: bool) -> None:
    """Refuse a ``--json-out`` that exists (without ``--force``) or cannot be written, before any long
    work starts."""
    if json_out is not None:
        from avscene.io.writers import check_writable

        check_writable(json_out, force=force)


def emit_report(report: Result, tables: Iterable[Table], *, json_out, json_flag: bool, force: bool) -> None:
    """Print a report as JSON or as tables, then write its JSON to ``--json-out`` (atomically): a
    file that fails after all (the disk filled up meanwhile) does not take the printed result with it."""
    from avscene.io.writers import atomic_write_text

    doc = json_text(report.to_json(), indent=2)
    if json_flag:
        print(doc)
    else:
        console = Console()
        for table in tables:
            console.print(table)
    if json_out is not None:
        atomic_write_text(json_out, doc + "\n", force=force)
