"""``avscene separate``: write the sound of one class (and optionally the rest) of each input.

Output files: ``.wav`` is written as 32-bit float WAV (no clipping, and source +
residual add up to the input to float precision), ``.flac`` as 24-bit FLAC
(samples beyond ±1 are clipped, with a warning). Every file is written
atomically; an existing file is only replaced with ``--force``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from avscene.cli._batch import BatchOptions, execute, plan
from avscene.cli._options import (
    DeviceOpt,
    ForceOpt,
    JobsOpt,
    JsonlOpt,
    JsonOpt,
    ModelOpt,
    OfflineOpt,
    PathsArg,
    ResumeOpt,
    RetryFailedOpt,
    RevisionOpt,
    ShardOpt,
    TimeoutOpt,
)
from avscene.cli._output import Sink, output_mode
from avscene.tasks.runner import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from avscene.hub import LoadedModel
    from avscene.results import SeparateResult
    from avscene.tasks.separate import SeparateOptions

EPILOG = """Examples:

  avscene separate clip.mp4 --label violin -o violin.wav --residual rest.wav

  avscene separate clip.mp4 --threshold 0.1 --json      (label: the top predicted class)

  avscene separate videos/ --label drum -o 'out/{name}.{label}.wav' --jsonl sep.jsonl --jobs 2

Templates: {name} = input file name without extension, {label} = the class separated,
{ext} = input extension. Default -o: '{name}.{label}.wav' in the current folder.
"""

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


def separate_table(results) -> Table:
    t = Table("file", "label", "method", "source", "residual")
    for i in (0, 3, 4):
        t.columns[i].overflow = "fold"
    for r in results:
        kept = sum(sum(row) for row in r.kept)
        label = r.label if r.label_source == "given" else f"{r.label} (predicted)"
        how = f"ncp, {kept}/{r.k * len(r.kept)} kept" if r.method == "ncp" else r.method
        t.add_row(r.file, label, how, r.source_path or "—", r.residual_path or "—")
    return t


def separate_cmd(
    paths: PathsArg,
    label: Annotated[Optional[str], typer.Option("--label", "-l", help="Class to separate. Default: the "
                                                 "class the model predicts best for each input.")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Source file (.wav or .flac), a "
                                                  "template with {name}, {label}, {ext}. Default: "
                                                  f"'{DEFAULT_OUTPUT}' in the current folder.")] = None,
    residual: Annotated[Optional[str], typer.Option("--residual", help="Also write everything else "
                                                    "(same template fields).")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", "-t", min=0.0, max=1.0,
                                                       help="Hard mask: keep the components whose scaled "
                                                       "relevance is >= this (the paper: 0.1). "
                                                       "Default: soft mask.")] = None,
    method: Annotated[str, typer.Option(help="auto (the best the model carries: mask, else dictionary, "
                                        "else ncp; ncp whenever --threshold is given), mask (the "
                                        "separation network: `avscene train-separator`), dictionary "
                                        "(supervised NMF: `avscene train-dictionaries`) or ncp (the "
                                        "paper's ranking of NMF components).")] = "auto",
    components: Annotated[int, typer.Option("--components", "-k", min=1, help="NMF components (ncp).")] = 20,
    divergence: Annotated[str, typer.Option(help="NMF divergence: kl (magnitude) or is (power).")] = "kl",
    output_rate: Annotated[str, typer.Option(help="model (16 kHz) or input (the input's sample "
                                             "rate).")] = "model",
    chunk_seconds: Annotated[float, typer.Option(min=2.0, help="Longer inputs are separated in chunks "
                                                 "of this length (one NMF each), cross-faded over 1 s; "
                                                 "memory does not grow with the input.")] = 30.0,
    force: ForceOpt = False,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = "auto",
    offline: OfflineOpt = False,
    json_out: JsonOpt = False,
    jsonl: JsonlOpt = None,
    resume: ResumeOpt = False,
    retry_failed: RetryFailedOpt = False,
    jobs: JobsOpt = 1,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    shard: ShardOpt = None,
) -> int:
    """Separate the sound of one class from each input (mask network, dictionaries, or NMF components ranked by the audio network)."""
    from avscene.proposals.nmf import NMFOptions
    from avscene.tasks.runner import FileJob, ModelSpec
    from avscene.tasks.separate import SeparateOptions

    batch = BatchOptions(jobs=jobs, timeout=timeout, shard=shard, jsonl=jsonl, resume=resume,
                         retry_failed=retry_failed, force=force)
    mode = output_mode(json_out, jsonl)
    p = plan(paths, batch)
    templates = {"-o": output or DEFAULT_OUTPUT, **({"--residual": residual} if residual else {})}
    check_templates(templates, p.files, n_all=p.n_all)
    opts = SeparateOptions(label=label, threshold=threshold, output_rate=output_rate,  # type: ignore[arg-type]
                           nmf=NMFOptions(k=components, divergence=divergence),  # type: ignore[arg-type]
                           chunk_seconds=chunk_seconds, method=method)  # type: ignore[arg-type]
    spec = ModelSpec(model, revision=revision, offline=offline, device=device)
    job = FileJob(separate_and_write, spec, WriteOptions(opts, templates, force), check_job)
    return execute(p, job, Sink(mode=mode, table=separate_table, log=p.log), batch, label="separate")
