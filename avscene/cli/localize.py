"""``avscene localize``: where each class is visible and when it is heard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from avscene.cli._batch import ClassifierArgs, CommonArgs, Plan, batch_command, execute, plan, recorded
from avscene.cli._options import AudacityOpt, EventThresholdOpt, LabelsOpt, PathsArg, VttOpt
from avscene.cli._output import Sink

EPILOG = """Examples:

  avscene localize clip.mp4 --render overlay.mp4

  avscene localize clip.mp4 --label violin --label drum --json

  avscene localize videos/ --render 'overlays/{name}.mp4' --events-tsv events.tsv --jsonl loc.jsonl -j 2

  avscene localize videos/ --vtt 'subs/{name}.vtt' --audacity 'labels/{name}.txt'
"""


def localize_table(results) -> Table:
    t = Table("file", "class", "status", "heard (s)", "seen (s)", "both (s)")
    t.columns[0].overflow = "fold"
    for r in results:
        if not r.timing:
            t.add_row(r.file, "—", "", "", "", "")
        for lab, tm in r.timing.items():
            fmt = lambda iv: ", ".join(f"{a:.1f}–{b:.1f}" for a, b in iv) or "—"  # noqa: E731
            status = r.status.get(lab, "").replace("_", " ")
            t.add_row(r.file, lab, status, fmt(tm.heard), fmt(tm.seen), fmt(tm.both))
    return t


@batch_command(classifier=True)
def localize_cmd(
    paths: PathsArg,
    label: LabelsOpt = None,
    boxes: Annotated[int, typer.Option(min=1, help="Boxes reported per class and frame.")] = 1,
    event_threshold: EventThresholdOpt = 0.0,
    render: Annotated[Optional[str], typer.Option(help="Write an overlay video (H.264 + AAC); "
                                                  "a template with {name} for several inputs.")] = None,
    events_tsv: Annotated[Optional[Path], typer.Option(help="Write all events as a DCASE TSV "
                                                       "(filename, onset, offset, event_label, modality: "
                                                       "audio, visual or audio-visual).")] = None,
    scores_tsv: Annotated[Optional[Path], typer.Option(help="Write each input's audio scores for every "
                                                       "class as DIR/<name>.tsv (sed_scores_eval).")] = None,
    vtt: VttOpt = None,
    audacity: AudacityOpt = None,
    *,
    common: CommonArgs,
    classifier: ClassifierArgs,
) -> int:
    """Localize sound events: boxes per frame, audio scores over time, events, and an overlay video."""
    from avscene.io.writers import check_events_tsv_names, write_events_tsv
    from avscene.tasks.localize import LocalizeOptions
    from avscene.tasks.outputs import (
        AUDACITY, RENDER, SCORES_TSV, VTT, WriteOptions, check_localize, check_outputs, localize_and_write,
        scores_tsv_template,
    )
    from avscene.tasks.runner import FileJob

    p = plan(paths, common.batch())
    templates = {**({RENDER: render} if render else {}),
                 **({SCORES_TSV: scores_tsv_template(scores_tsv)} if scores_tsv is not None else {}),
                 **({VTT: vtt} if vtt else {}), **({AUDACITY: audacity} if audacity else {})}
    once = {"--events-tsv": events_tsv} if events_tsv is not None else {}
    check_outputs(templates, p.files, n_all=p.n_all, once=once)  # a bad template or a clash: refused up front
    if events_tsv is not None:
        check_events_tsv_names(p.files)  # a name the TSV cannot hold: refused before any output
    opts = LocalizeOptions(labels=tuple(label or ()), boxes=boxes, event_threshold=event_threshold,
                           audio_all_classes=scores_tsv is not None,
                           classify=classifier.classify_options(any_format=common.any_format))
    job = FileJob(localize_and_write, common.model_spec(), WriteOptions(opts, templates, common.force), check_localize)
    sink = Sink(mode=common.mode(), table=localize_table, log=p.log)
    finish = None if events_tsv is None else (
        lambda: write_events_tsv(_all_results(p, sink), events_tsv, force=common.force))
    return execute(p, job, sink, common.batch(), label="localize", finish=finish)


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
