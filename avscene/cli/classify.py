"""``avscene classify``: which sound events happen in each video."""

from __future__ import annotations

from rich.table import Table

from avscene.cli._batch import BatchOptions, execute, plan
from avscene.cli._options import (
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
)
from avscene.cli._output import Sink, output_mode
from avscene.tasks.runner import DEFAULT_TIMEOUT_S

EPILOG = """Examples:

  avscene classify clip.mp4

  avscene classify videos/ --jsonl labels.jsonl --jobs 4

  avscene classify videos/ --jsonl labels.jsonl --resume

  avscene classify videos/ --shard 2/8 --jsonl labels.2.jsonl

  avscene classify clip.mp4 --model org/avscene-model --revision v1 --json

--resume continues an interrupted run; --shard 2/8 is the second of 8 machines.
"""


def classify_table(results) -> Table:
    t = Table("file", "predicted", "top scores", "modalities", "duration")
    t.columns[0].overflow = "fold"
    for r in results:
        top = ", ".join(f"{x.label} {x.score:+.2f}" for x in r.labels[:3])
        t.add_row(r.file, ", ".join(r.predicted) or "—", top, "+".join(r.modalities), f"{r.duration:.1f}s")
    return t


def classify_cmd(
    paths: PathsArg,
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
    force: ForceOpt = False,
    jobs: JobsOpt = 1,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    shard: ShardOpt = None,
) -> int:
    """Classify videos: video-level sound-event labels with a score per class."""
    from avscene.tasks.classify import ClassifyOptions, classify_file
    from avscene.tasks.runner import FileJob, ModelSpec

    batch = BatchOptions(jobs=jobs, timeout=timeout, shard=shard, jsonl=jsonl, resume=resume,
                         retry_failed=retry_failed, force=force)
    mode = output_mode(json_out, jsonl)
    p = plan(paths, batch)
    opts = ClassifyOptions(top_k=top_k, threshold=threshold, audio_threshold=audio_threshold,
                                 visual_threshold=visual_threshold,
                           edge_model=None if edge_model is None else str(edge_model))
    job = FileJob(classify_file, ModelSpec(model, revision=revision, offline=offline, device=device), opts)
    return execute(p, job, Sink(mode=mode, table=classify_table, log=p.log), batch, label="classify")
