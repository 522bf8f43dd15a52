"""``avscene localize``: where each class is visible and when it is heard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from avscene.cli._batch import ClassifierArgs, CommonArgs, batch_command, execute, plan
from avscene.cli._options import (
    AudacityOpt, BoxModeOpt, BoxRegressorOpt, EraseRoundsOpt, EventThresholdOpt, LabelsOpt, PathsArg, SnapOpt, VttOpt,
)
from avscene.cli._output import Sink

EPILOG = """Examples:

  avscene localize clip.mp4 --render overlay.mp4

  avscene localize clip.mp4 --label violin --label drum --json

  avscene localize videos/ --render 'overlays/{name}.mp4' --events-tsv events.tsv --jsonl loc.jsonl -j 2

  avscene localize videos/ --vtt 'subs/{name}.vtt' --audacity 'labels/{name}.txt'

  avscene localize videos/ --render 'overlays/{relpath}/{name}.mp4'   (cam1/0001.mp4, cam2/0001.mp4 kept apart)

Templates: {name} = input file name without extension, {ext} = its extension, {relpath} = its
folder below the directory argument. Two inputs that would write one file (over every input of
every --shard) are refused before any work (exit 2).
"""


def localize_table(results) -> Table:
    t = Table("file", "class", "status", "events (s)", "seen (s)", "both (s)")
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
    box_mode: BoxModeOpt = "evidence",
    erase_rounds: EraseRoundsOpt = 3,
    box_regressor: BoxRegressorOpt = None,
    snap: SnapOpt = True,
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
    from avscene.checkpoint.box_regressor import read_box_regressor
    from avscene.tasks.localize import LocalizeOptions
    from avscene.tasks.outputs import (
        AUDACITY, RENDER, SCORES_TSV, VTT, RunFile, check_localize, localize_and_write, scores_tsv_template,
    )
    from avscene.tasks.runner import FileJob

    p = plan(paths, common.batch())
    templates = {**({RENDER: render} if render else {}),
                 **({SCORES_TSV: scores_tsv_template(scores_tsv)} if scores_tsv is not None else {}),
                 **({VTT: vtt} if vtt else {}), **({AUDACITY: audacity} if audacity else {})}
    events = None if events_tsv is None else RunFile("events", events_tsv, force=common.overwrite)
    opts = LocalizeOptions(labels=tuple(label or ()), boxes=boxes, event_threshold=event_threshold,
                           box_mode=box_mode, erase_rounds=erase_rounds, snap=snap,
                           box_regressor=None if box_regressor is None else read_box_regressor(box_regressor),
                           classify=classifier.classify_options(any_format=common.any_format))
    outputs = p.outputs(opts, templates, common, run_file=events)  # a bad template, a clash: refused up front
    job = FileJob(localize_and_write, common.model_spec(), outputs, check_localize)
    sink = Sink(mode=common.mode(), table=localize_table, log=p.log)
    return execute(p, job, sink, common.batch(), label="localize", run_file=events)

