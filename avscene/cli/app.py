"""The ``avscene`` command: composes the per-command modules (each a thin wrapper)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from avscene import __version__
from avscene.cli._errors import ARGV, EXIT_USAGE, report, set_verbose

app = typer.Typer(
    name="avscene",
    help="Weakly supervised audio-visual scene analysis: classify, localize and separate "
    "the sound events of videos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"avscene {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print the traceback of every error (as AVSCENE_DEBUG=1 "
                           "does); without it, one line per failure.")
    ] = False,
) -> None:
    """avscene: weakly supervised audio-visual scene analysis."""
    set_verbose(verbose)


class _Command(TyperCommand):
    """A command whose arguments read as man pages write them: ``PATH...`` / ``MANIFEST`` in the
    usage line and the argument list (typer writes ``{paths}...`` and ``paths... <list[Path]>``)."""

    def collect_usage_pieces(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        args = [p for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return [self.options_metavar, *map(_argument_label, args)]

    def format_options(self, ctx, formatter) -> None:  # noqa: ANN001 - click's signature
        args, opts = [], []
        for p in self.get_params(ctx):
            record = p.get_help_record(ctx)
            if record is None:
                continue
            if p.param_type_name == "argument":
                args.append((_argument_label(p), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_label(param) -> str:  # noqa: ANN001 - a click Parameter
    name = param.metavar or param.name.upper()
    return f"{name}..." if param.nargs != 1 else name


def command(fn: Callable[..., int], name: str, epilog: str | None = None) -> None:
    """Register ``fn`` as a command: its return value is the exit code, AvsceneErrors are reported."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from avscene.tasks.limits import Interrupted, interrupts_raise

        try:
            with interrupts_raise():  # SIGTERM too unwinds (atomic writes clean up) and says so
                code = fn(*args, **kwargs)
        except KeyboardInterrupt as e:  # outside a batch loop (which reports its own)
            interrupted = Interrupted.of(e)
            print(f"avscene: interrupted ({interrupted})", file=sys.stderr)
            raise typer.Exit(interrupted.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - mapped to a one-line message
            code = report(e)
        raise typer.Exit(code or 0)

    app.command(name, epilog=_verbatim_examples(epilog), cls=_Command)(wrapper)


def _verbatim_examples(epilog: str | None) -> str | None:
    """Mark each indented paragraph of an epilog (the example command lines) with click's
    ``\\b``, so that the help shows it as written, unwrapped at any terminal width; prose
    paragraphs are still wrapped."""
    if epilog is None:
        return None
    paragraphs = epilog.strip("\n").split("\n\n")
    return "\n\n".join(f"\b\n{p}" if p.startswith("  ") else p for p in paragraphs)


def _register() -> None:
    from avscene.cli import (
        calibrate, classify, doctor, download, evaluate, evaluate_sep, localize, separate, train, train_dictionaries,
        train_events, train_separator, upload,
    )
    from avscene.cli import report as report_cli

    command(classify.classify_cmd, "classify", classify.EPILOG)
    command(localize.localize_cmd, "localize", localize.EPILOG)
    command(report_cli.report_cmd, "report", report_cli.EPILOG)
    command(train.train_cmd, "train", train.EPILOG)
    command(train_dictionaries.train_dictionaries_cmd, "train-dictionaries", train_dictionaries.EPILOG)
    command(train_separator.train_separator_cmd, "train-separator", train_separator.EPILOG)
    command(train_events.train_events_cmd, "train-events", train_events.EPILOG)
    command(evaluate.evaluate_cmd, "evaluate", evaluate.EPILOG)
    command(calibrate.calibrate_cmd, "calibrate", calibrate.EPILOG)
    command(download.download_cmd, "download", download.EPILOG)
    command(upload.upload_cmd, "upload", upload.EPILOG)
    command(separate.separate_cmd, "separate", separate.EPILOG)
    command(evaluate_sep.evaluate_sep_cmd, "evaluate-separation", evaluate_sep.EPILOG)
    command(doctor.doctor_cmd, "doctor", doctor.EPILOG)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    set_verbose(False)  # the --verbose of a previous in-process call does not carry over
    try:
        rv = app(args=argv, standalone_mode=False)
        # click returns the code of a typer.Exit instead of raising it when not standalone
        return rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except SystemExit as e:  # click usage errors in non-standalone mode
        return int(e.code or 0)
    except Exception as e:  # click usage errors (typer vendors its own click: duck-type them)
        if callable(getattr(e, "show", None)) and hasattr(e, "exit_code"):
            e.show()
            return EXIT_USAGE
        if type(e).__name__ == "Abort":
            return 130
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
