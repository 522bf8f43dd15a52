"""``avscene classify``: which sound events happen in each video."""

from __future__ import annotations

from rich.table import Table

from avscene.cli._batch import ClassifierArgs, CommonArgs, batch_command, execute, plan
from avscene.cli._options import PathsArg
from avscene.cli._output import Sink

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


@batch_command(classifier=True)
def classify_cmd(paths: PathsArg, *, common: CommonArgs, classifier: ClassifierArgs) -> int:
    """Classify videos: video-level sound-event labels with a score per class."""
    from avscene.tasks.classify import classify_file
    from avscene.tasks.runner import FileJob

    p = plan(paths, common.batch())
    job = FileJob(classify_file, common.model_spec(), classifier.classify_options(any_format=common.any_format))
    return execute(p, job, Sink(mode=common.mode(), table=classify_table, log=p.log), common.batch(), label="classify")
