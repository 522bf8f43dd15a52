"""``avscene report``: one self-contained HTML page per input, and an index of a folder of them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from avscene.cli._batch import BatchOptions, Plan, execute, plan, recorded
from avscene.cli._options import (
    AudacityOpt,
    AudioThresholdOpt,
    DeviceOpt,
    EdgeModelOpt,
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
    ThresholdOpt,
    TimeoutOpt,
    TopKOpt,
    VisualThresholdOpt,
    VttOpt,
)
from avscene.cli._output import Sink, output_mode
from avscene.cli.localize import output_path, write_event_files
from avscene.tasks.report import MAX_EMBED_SECONDS, MAX_THUMBNAILS
from avscene.tasks.runner import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from avscene.hub import LoadedModel
    from avscene.results import ReportResult
    from avscene.tasks.report import ReportOptions

EPILOG = """Examples:

  avscene report clip.mp4 -o clip.html

  avscene report videos/ -o reports/            (one page per video and reports/index.html)

  avscene report clip.mp4 -o 'reports/{name}.html' --separate --vtt 'reports/{name}.vtt'

  avscene report long.mp4 -o long.html --max-thumbnails 40 --max-embed-seconds 60

A folder as -o (an existing one, or a path ending in /) gets {name}.html per input and an
index.html listing them (sortable, filterable by class; open it in any browser, no server).
"""
INDEX_NAME = "index.html"


def report_table(results) -> Table:
    t = Table("file", "page", "classes (heard / seen / both)")
    t.columns[0].overflow = t.columns[1].overflow = "fold"
    for r in results:
        t.add_row(r.file, r.page, ", ".join(f"{k} ({v})" for k, v in r.presence.items()) or "—")
    return t


@dataclass(frozen=True)
class WriteOptions:
    """What a (worker) process needs to build one input's report and write its files."""

    report: ReportOptions
    template: str  # the page's path, a template with {name}
    n_inputs: int = 1  # inputs of the whole run (a template needs {name} when > 1)
    force: bool = False  # overwrite existing files
    vtt: str | None = None  # WebVTT captions template
    audacity: str | None = None  # Audacity label track template


def report_and_write(path: Path, *, loaded: LoadedModel, opts: WriteOptions) -> ReportResult:
    """Build one input's report and write its page, its long audio and its caption files."""
    from avscene import __version__
    from avscene.io.report_html import thumb_uri, write_report
    from avscene.results import ReportResult
    from avscene.tasks.report import build_page

    page = build_page(path, loaded, opts.report, version=__version__)
    out = output_path(opts.template, Path(path), n_inputs=opts.n_inputs)
    files = write_report(page, out, force=opts.force)
    r = page.localization
    write_event_files(r, opts.vtt, opts.audacity, n_inputs=opts.n_inputs, force=opts.force)
    extra = [output_path(t, Path(path), n_inputs=opts.n_inputs) for t in (opts.vtt, opts.audacity) if t]
    return ReportResult(localization=r, page=str(files[0]), presence=page.presence,
                        files=tuple(map(str, [*files[1:], *extra])), left_out=page.left_out,
                        poster=None if page.poster is None else thumb_uri(page.poster),
                        separations=page.separations)


def page_template(output: str) -> tuple[str, Path | None]:
    """``-o`` → (page template, index file or None): a folder gets ``{name}.html`` pages and an index."""
    if output.endswith(("/", "\\")) or Path(output).is_dir():
        folder = Path(output)
        return str(folder / "{name}.html"), folder / INDEX_NAME
    return output, None


def report_cmd(
    paths: PathsArg,
    output: Annotated[str, typer.Option("--output", "-o", help="The page: a file, a template with {name}, or a "
                                        "folder (then also FOLDER/index.html).")] = "reports/",
    separate: Annotated[bool, typer.Option("--separate", help="Also separate each predicted class: players "
                                           "for its source and the residual.")] = False,
    method: Annotated[str, typer.Option(help="Separation method with --separate (see `avscene separate "
                                        "--help`).")] = "auto",
    max_thumbnails: Annotated[int, typer.Option(min=0, help="Frames shown per class, evenly spaced over the "
                                                "sampled ones (long inputs).")] = MAX_THUMBNAILS,
    max_embed_seconds: Annotated[float, typer.Option(min=0.0, help="Audio up to this long is embedded in the "
                                                     "page; longer tracks are written beside it (Ogg/Opus) "
                                                     "and linked.")] = MAX_EMBED_SECONDS,
    label: Annotated[Optional[list[str]], typer.Option("--label", "-l", help="Report this class (repeatable); "
                                                       "default: the predicted classes.")] = None,
    event_threshold: Annotated[float, typer.Option(help="Audio score above which a window is "
                                                   "sounding (the paper: 0).")] = 0.0,
    vtt: VttOpt = None,
    audacity: AudacityOpt = None,
    force: ForceOpt = False,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = "auto",
    offline: OfflineOpt = False,
    top_k: TopKOpt = None,
    threshold: ThresholdOpt = None,
    audio_threshold: AudioThresholdOpt = None,
    visual_threshold: VisualThresholdOpt = None,
    edge_model: EdgeModelOpt = None,
    json_out: JsonOpt = False,
    jsonl: JsonlOpt = None,
    resume: ResumeOpt = False,
    retry_failed: RetryFailedOpt = False,
    jobs: JobsOpt = 1,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    shard: ShardOpt = None,
) -> int:
    """Write one self-contained HTML report per input: classes, timeline with frames, audio players."""
    from avscene.cli._errors import ARGV
    from avscene.tasks.classify import ClassifyOptions
    from avscene.tasks.localize import LocalizeOptions
    from avscene.tasks.report import ReportOptions
    from avscene.tasks.runner import FileJob, ModelSpec

    batch = BatchOptions(jobs=jobs, timeout=timeout, shard=shard, jsonl=jsonl, resume=resume,
                         retry_failed=retry_failed, force=force)
    mode = output_mode(json_out, jsonl)
    p = plan(paths, batch)
    template, index = page_template(output)
    for t in (template, vtt, audacity):
        if t and p.files:
            output_path(t, p.files[0], n_inputs=p.n_all)  # refuse a bad template before any work
    loc = LocalizeOptions(labels=tuple(label or ()), event_threshold=event_threshold,
                          classify=ClassifyOptions(top_k=top_k, threshold=threshold, audio_threshold=audio_threshold,
                                                   visual_threshold=visual_threshold,
                                                   edge_model=None if edge_model is None else str(edge_model)))
    opts = ReportOptions(localize=loc, max_thumbnails=max_thumbnails, max_embed_seconds=max_embed_seconds,
                         separate=separate, separate_method=method, command=shlex.join(["avscene", *ARGV]))
    spec = ModelSpec(model, revision=revision, offline=offline, device=device)
    job = FileJob(report_and_write, spec, WriteOptions(opts, template, p.n_all, force, vtt, audacity),
                  _check)
    sink = Sink(mode=mode, table=report_table, log=p.log)
    finish = None if index is None else (lambda: _write_index(p, sink, index))
    return execute(p, job, sink, batch, label="report", finish=finish)


def _check(opts: WriteOptions, loaded: LoadedModel) -> None:
    from avscene.cli.localize import WriteOptions as LocalizeWrite, check_labels

    check_labels(LocalizeWrite(opts.report.localize), loaded)


def _write_index(p: Plan, sink: Sink, index: Path) -> None:
    """The index of this run's pages and, with --resume, the recorded ones, in input order."""
    from avscene.io.report_html import write_index

    new = {r.file: r.to_json() for r in sink.results if r.ok}
    old = {f: rec for f, rec in recorded(p).items() if "report" in rec}
    records = [new.get(f) or old.get(f) for f in map(str, p.files)]
    write_index([r for r in records if r is not None], index)
