"""``separate`` to files: one input's source (and residual) written under output templates.

What ``avscene separate`` runs for each input, in the batch runner's worker processes
(:class:`avscene.tasks.runner.FileJob`), and what a Python user calls to get files
rather than arrays: the separation streams into :class:`avscene.io.writers.SeparationFiles`,
which writes hidden temporaries renamed into place when the input is done.

Output files: ``.wav`` is written as 32-bit float WAV (no clipping, and source +
residual add up to the input to float precision), ``.flac`` as 24-bit FLAC
(samples beyond ±1 are clipped, with a warning). An existing file is only
replaced with ``force``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avscene.hub import LoadedModel
    from avscene.results import SeparateResult
    from avscene.tasks.separate import SeparateOptions

DEFAULT_OUTPUT = "{name}.{label}.wav"
TEMPLATE_FIELDS = ("name", "label", "ext")


def template_fields(template: str, *, option: str) -> set[str]:
    """The placeholders of an output template; raises UsageError on unknown ones or bad syntax."""
    from avscene.errors import UsageError

    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise UsageError(f"{option} {template!r}: {e}; write literal braces as {{{{ and }}}}") from e
    bad = sorted(f for f in fields if f not in TEMPLATE_FIELDS)
    if bad:
        raise UsageError(f"{option} {template!r}: unknown placeholder(s) {bad}; use "
                         f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}")
    return fields


def fill(template: str, src: Path, label: str) -> Path:
    """The output path of input ``src`` separated as ``label``."""
    return Path(template.format(name=src.stem, label=label, ext=src.suffix.lstrip(".")))


def check_templates(templates: dict[str, str], files: Sequence[Path], *, n_all: int | None = None) -> None:
    """Refuse, before any work, templates that are invalid or would make inputs share a file.

    ``n_all``: inputs of the whole run when ``files`` is one shard of it (default ``len(files)``).
    """
    from avscene.errors import UsageError
    from avscene.io.writers import AUDIO_FORMATS

    n_all = len(files) if n_all is None else n_all
    for option, template in templates.items():
        fields = template_fields(template, option=option)
        if n_all > 1 and "name" not in fields:
            raise UsageError(f"{option} {template!r}: with several inputs the output needs a {{name}} "
                             "placeholder, e.g. 'out/{name}.{label}.wav'")
        suffix = fill(template, Path("x.mp4"), "x").suffix.lower()
        if suffix not in AUDIO_FORMATS:  # avscene.io.writers: .wav float32, .flac 24-bit
            raise UsageError(f"{option} {template!r}: write .wav (32-bit float) or .flac (24-bit)")
        seen: dict[Path, Path] = {}
        for f in files:  # "{label}" kept literal: the label of an input may be predicted later
            key = fill(template, f, "{label}").resolve()
            if key in seen:
                raise UsageError(f"{option} {template!r}: {seen[key]} and {f} would write the same file; "
                                 "add {ext} to the template or separate them in two runs")
            seen[key] = f
    probe = files[0] if files else Path("x.mp4")
    if len(templates) == 2 and len({fill(t, probe, "{label}").resolve() for t in templates.values()}) == 1:
        raise UsageError("-o and --residual name the same file; give the residual another name")


def _check_free(paths: Sequence[Path], src: Path, *, force: bool) -> None:
    """Fail this input (OutputError) if an output exists without --force or is the input itself."""
    from avscene.errors import OutputError

    for p in paths:
        if p.resolve() == src.resolve():
            raise OutputError(f"{p} is the input file itself; choose another output name")
        if p.exists() and not force:
            raise OutputError(f"{p} already exists; pass --force to overwrite it")


@dataclass(frozen=True)
class WriteOptions:
    """What a (worker) process needs to separate one input and write its files."""

    separate: SeparateOptions
    templates: dict[str, str]  # option ("-o", "--residual") → output template
    force: bool = False  # overwrite existing files


def separate_and_write(src: Path, *, loaded: LoadedModel, opts: WriteOptions) -> SeparateResult:
    """Separate one input, streaming its file(s) to disk; returns the result with the paths filled in.

    The outputs are written chunk by chunk to temporary names and renamed into place
    only when the whole input is done, so memory does not grow with the input's
    length and a failure leaves no partial file.
    """
    import dataclasses
    from contextlib import ExitStack

    from avscene.io.writers import SeparationFiles
    from avscene.tasks.separate import separate_stream

    templates, force = opts.templates, opts.force
    if opts.separate.label is not None:  # fail fast, before the separation work
        _check_free([fill(t, src, opts.separate.label) for t in templates.values()], src, force=force)
    named: dict[str, Path] = {}

    def name(label: str) -> tuple[Path, Path | None]:
        named.update({k: fill(t, src, label) for k, t in templates.items()})
        _check_free(list(named.values()), src, force=force)
        return named["-o"], named.get("--residual")

    with ExitStack() as stack:
        files = SeparationFiles(stack, name, force=force)
        r = separate_stream(src, loaded, opts.separate, files)
    clipped = [f"{w.path}: samples beyond ±1 were clipped (write .wav to keep them)"
               for w in (files.source, files.residual) if w is not None and w.clipped]
    return dataclasses.replace(r, source_path=str(named["-o"]), warnings=(*r.warnings, *clipped),
                               residual_path=str(named["--residual"]) if "--residual" in named else None)


def check_job(opts: WriteOptions, loaded: LoadedModel) -> None:
    """Refuse a bad label or option once, before any input."""
    from avscene.tasks.separate import check_options

    check_options(opts.separate, loaded)


__all__ = ["DEFAULT_OUTPUT", "TEMPLATE_FIELDS", "WriteOptions", "check_job", "check_templates", "fill",
           "separate_and_write", "template_fields"]
