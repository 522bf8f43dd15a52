"""``avscene localize``: where each class is visible and when it is heard."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

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
from avscene.tasks.runner import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from avscene.hub import LoadedModel
    from avscene.results import LocalizeResult
    from avscene.tasks.localize import LocalizeOptions

EPILOG = """Examples:

  avscene localize clip.mp4 --render overlay.mp4

  avscene localize clip.mp4 --label violin --label drum --json

  avscene localize videos/ --render 'overlays/{name}.mp4' --events-tsv events.tsv --jsonl loc.jsonl -j 2
"""


def localize_table(results) -> Table:
    t = Table("file", "class", "heard (s)", "seen (s)", "overlap")
    t.columns[0].overflow = "fold"
    for r in results:
        if not r.timing:
            t.add_row(r.file, "—", "", "", "")
        for lab, tm in r.timing.items():
            fmt = lambda iv: ", ".join(f"{a:.1f}–{b:.1f}" for a, b in iv) or "—"  # noqa: E731
            t.add_row(r.file, lab, fmt(tm.heard), fmt(tm.seen), "yes" if tm.overlap else "no")
    return t


def output_path(template: str, src: Path, *, n_inputs: int, **fields: str) -> Path:
    """Fill ``{name}`` (input stem) and other fields of an output template."""
    from avscene.errors import UsageError

    if n_inputs > 1 and "{name}" not in template:
        raise UsageError(f"{template!r}: with several inputs the output needs a {{name}} placeholder, "
                         "e.g. 'out/{name}.mp4'")
    try:
        return Path(template.format(name=src.stem, **fields))
    except (KeyError, IndexError) as e:
        raise UsageError(f"{template!r}: unknown placeholder {e}; use {{name}}") from e


@dataclass(frozen=True)
class WriteOptions:
    """What a (worker) process needs to localize one input and write its files."""

    localize: LocalizeOptions
    render: str | None = None  # overlay video template
    scores_tsv: Path | None = None  # folder of per-input score TSVs
    n_inputs: int = 1  # inputs of the whole run (a template needs {name} when > 1)
    force: bool = False  # overwrite existing files
    vtt: str | None = None  # WebVTT captions template
    audacity: str | None = None  # Audacity label track template


def localize_and_write(path: Path, *, loaded: LoadedModel, opts: WriteOptions) -> LocalizeResult:
    """Localize one input and write its score TSV and overlay video; a writer failure fails the input."""
    from avscene.io.render import render_overlay
    from avscene.io.writers import write_scores_tsv
    from avscene.tasks.localize import localize_file

    r = localize_file(path, loaded, opts.localize)
    if opts.scores_tsv is not None:
        write_scores_tsv(r, opts.scores_tsv, class_names=list(loaded.labels), force=opts.force)
    if opts.render:
        render_overlay(r.file, r, output_path(opts.render, Path(r.file), n_inputs=opts.n_inputs), force=opts.force)
    write_event_files(r, opts.vtt, opts.audacity, n_inputs=opts.n_inputs, force=opts.force)
    return r


def write_event_files(r: LocalizeResult, vtt: str | None, audacity: str | None, *, n_inputs: int,
                      force: bool) -> None:
    """The --vtt captions and --audacity label track of one input, where asked for."""
    from avscene.io.captions import write_audacity, write_webvtt

    if vtt:
        write_webvtt(r.events, output_path(vtt, Path(r.file), n_inputs=n_inputs), force=force)
    if audacity:
        write_audacity(r.events, output_path(audacity, Path(r.file), n_inputs=n_inputs), force=force)


def check_labels(opts: WriteOptions, loaded: LoadedModel) -> None:
    """Refuse an unknown --label once, before any input (a usage error, not N failed inputs)."""
    from avscene.tasks.localize import resolve_labels

    resolve_labels(opts.localize.labels, (), list(loaded.labels))


def localize_cmd(
    paths: PathsArg,
    label: Annotated[Optional[list[str]], typer.Option("--label", "-l", help="Report this class (repeatable); "
                                                       "default: the predicted classes.")] = None,
    boxes: Annotated[int, typer.Option(min=1, help="Boxes reported per class and frame.")] = 1,
    event_threshold: Annotated[float, typer.Option(help="Audio score above which a window is "
                                                   "sounding (the paper: 0).")] = 0.0,
    render: Annotated[Optional[str], typer.Option(help="Write an overlay video (H.264 + AAC); "
                                                  "a template with {name} for several inputs.")] = None,
    events_tsv: Annotated[Optional[Path], typer.Option(help="Write all events as a DCASE TSV "
                                                       "(filename, onset, offset, event_label, modality: "
                                                       "audio, visual or audio-visual).")] = None,
    scores_tsv: Annotated[Optional[Path], typer.Option(help="Write each input's audio scores for every "
                                                       "class as DIR/<name>.tsv (sed_scores_eval).")] = None,
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
    """Localize sound events: boxes per frame, audio scores over time, events, and an overlay video."""
    from avscene.io.writers import write_events_tsv
    from avscene.tasks.classify import ClassifyOptions
    from avscene.tasks.localize import LocalizeOptions
    from avscene.tasks.runner import FileJob, ModelSpec

    batch = BatchOptions(jobs=jobs, timeout=timeout, shard=shard, jsonl=jsonl, resume=resume,
                         retry_failed=retry_failed, force=force)
    mode = output_mode(json_out, jsonl)
    p = plan(paths, batch)
    for template in (render, vtt, audacity):
        if template and p.files:
            output_path(template, p.files[0], n_inputs=p.n_all)  # refuse a bad template before any work
    opts = LocalizeOptions(
        labels=tuple(label or ()), boxes=boxes, event_threshold=event_threshold,
        audio_all_classes=scores_tsv is not None,
        classify=ClassifyOptions(top_k=top_k, threshold=threshold, audio_threshold=audio_threshold,
                                 visual_threshold=visual_threshold,
                                 edge_model=None if edge_model is None else str(edge_model)))
    spec = ModelSpec(model, revision=revision, offline=offline, device=device)
    job = FileJob(localize_and_write, spec, WriteOptions(opts, render, scores_tsv, p.n_all, force, vtt, audacity), check_labels)
    sink = Sink(mode=mode, table=localize_table, log=p.log)
    finish = None if events_tsv is None else (
        lambda: write_events_tsv(_all_results(p, sink), events_tsv, force=force))
    return execute(p, job, sink, batch, label="localize", finish=finish)


def _all_results(p: Plan, sink: Sink) -> list[Any]:
    """This run's results and, with --resume, the recorded ones, in input order (for the events TSV)."""
    from types import SimpleNamespace

    from avscene.results import Event, Timing

    new = {r.file: r for r in sink.results}
    old = recorded(p)
    out = []
    for f in map(str, p.files):
        if f in new:
            out.append(new[f])
        elif f in old and "error" not in old[f]:  # the fields the TSV writer reads
            events = tuple(Event(e["label"], e["onset"], e["offset"]) for e in old[f].get("events", []))
            timing = {lab: Timing(*(tuple(map(tuple, t.get(k, []))) for k in ("heard", "seen")),
                                  overlap=bool(t.get("overlap")), both=tuple(map(tuple, t.get("both", []))))
                      for lab, t in old[f].get("timing", {}).items()}
            out.append(SimpleNamespace(ok=True, file=f, events=events, timing=timing))
    return out
