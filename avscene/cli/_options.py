"""Options shared by several commands, as ``Annotated`` aliases (one definition each)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

PathsArg = Annotated[
    list[Path],
    typer.Argument(metavar="PATH", help="Video/audio files or directories (searched recursively for media files).",
                   show_default=False),
]
ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Checkpoint: a local folder or a Hub repo id (org/name). "
                 "Default: the bundled model.", envvar="AVSCENE_MODEL_ID"),
]
RevisionOpt = Annotated[
    Optional[str],
    typer.Option("--revision", help="Hub revision (branch, tag or commit) of --model."),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")
]
OfflineOpt = Annotated[
    bool,
    typer.Option("--offline", help="Never touch the network: use the Hugging Face cache only "
                 "(also on when HF_HUB_OFFLINE=1)."),
]
HubTimeoutOpt = Annotated[
    Optional[float],
    typer.Option("--hub-timeout", metavar="SECONDS",
                 help="How long a Hugging Face Hub request may wait for the server (to connect, or for more "
                 "data) before the command fails. Default: 10."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document with every result.")]
JsonlOpt = Annotated[
    Optional[str],
    typer.Option("--jsonl", metavar="FILE", help="Write one JSON line per input to FILE as soon as it is "
                 "done, durably ('-': stdout); see --resume."),
]
ResumeOpt = Annotated[
    bool,
    typer.Option("--resume", help="Skip the inputs already recorded in the --jsonl FILE (failed ones too, "
                 "unless --retry-failed) and append the new records; the output files of an input without a "
                 "record (left by a killed run) are replaced."),
]
RetryFailedOpt = Annotated[
    bool, typer.Option("--retry-failed", help="With --resume: process the inputs recorded as failed again.")
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Overwrite existing output files, and an existing --jsonl FILE "
                       "(without --resume).")
]
JobsOpt = Annotated[
    int,
    typer.Option("--jobs", "-j", min=1, help="Worker processes, each loading the model once; the output "
                 "is the same as with --jobs 1, in input order."),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", min=0.0, metavar="SECONDS", help="Time limit per input: this many seconds "
                 "plus one second per second of media (from the file's header); an input that takes "
                 "longer fails and the run goes on. 0: no limit."),
]
ShardOpt = Annotated[
    Optional[str],
    typer.Option("--shard", metavar="I/N", help="Process only shard I of N (1 <= I <= N): every N-th input "
                 "of the inputs sorted by path, starting with the I-th. N runs with I = 1..N cover every "
                 "input exactly once."),
]
AnyFormatOpt = Annotated[
    bool,
    typer.Option("--any-format", help="Also decode containers and codecs that videos and recordings do not "
                 "use (by default only MP4/MOV/3GP, MKV/WebM, AVI, MPEG-TS/PS, FLV, WMV, Ogg, WAV/AIFF, MP3, "
                 "AAC, FLAC and their usual codecs are read; anything else is refused before decoding)."),
]
TopKOpt = Annotated[
    Optional[int], typer.Option("--top-k", min=1, help="Predict at most K labels per input.")
]
ThresholdOpt = Annotated[
    Optional[float],
    typer.Option("--threshold", help="Score above which a label is predicted "
                 "(default: the model's, 0 for hinge-trained models)."),
]
AudioThresholdOpt = Annotated[
    Optional[float],
    typer.Option("--audio-threshold", help="Audio score above which a class is heard (default: the "
                 "model's calibrated one, else 0 for hinge-trained models)."),
]
VisualThresholdOpt = Annotated[
    Optional[float],
    typer.Option("--visual-threshold", help="Visual score above which a class is seen (default: the "
                 "model's calibrated one, else 0 for hinge-trained models)."),
]


def _check_edge_model(path: Optional[Path]) -> Optional[Path]:
    """Refuse a file OpenCV cannot use as a structured-edge model once, before any input."""
    if path is not None:
        from avscene.proposals.edge_model import edge_model_problem

        problem = edge_model_problem(path)
        if problem is not None:
            raise typer.BadParameter(f"{path}: {problem}")
    return path


EdgeModelOpt = Annotated[
    Optional[Path],
    typer.Option("--edge-model", exists=True, dir_okay=False,
                 callback=_check_edge_model,
                 help="Structured-edge model file (model.yml.gz) for EdgeBoxes; default: gradient edges."),
]
ReportJsonOutOpt = Annotated[
    Optional[Path], typer.Option("--json-out", help="Also write the report as JSON.")
]
ReportJsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")]
ReportForceOpt = Annotated[bool, typer.Option(help="Overwrite --json-out.")]
LabelsOpt = Annotated[
    Optional[list[str]],
    typer.Option("--label", "-l", metavar="CLASS", help="Report this class (repeatable); default: the predicted classes."),
]
EventThresholdOpt = Annotated[float, typer.Option(help="Audio score above which a window is sounding (the paper: 0).")]
BoxModeOpt = Annotated[str, typer.Option(
    help="How a class's box is chosen: 'evidence', the largest region of its evidence map over the "
         "windows (default); 'window', the top-scoring window (the paper's choice); 'erase', the evidence "
         "box grown by adversarial erasing (the regions found so far hidden, the frame scored again, the "
         "next region added while the class keeps evidence).")]
BoxRegressorOpt = Annotated[Optional[Path], typer.Option(
    metavar="FILE", help="Move each chosen box by this self-trained box regressor (a file written by "
                         "avscene.train.box_regressor, for this model's classes) before snapping.")]
EraseRoundsOpt = Annotated[int, typer.Option(
    min=1, help="--box-mode erase: regions found per frame at most (1: the evidence box alone).")]
SnapOpt = Annotated[bool, typer.Option(
    "--snap/--no-snap", help="Snap each box to the object's boundary (grabCut started from the box).")]
VttOpt = Annotated[
    Optional[str],
    typer.Option("--vtt", metavar="FILE", help="Write the sound events as WebVTT captions ([violin] cues, one "
                 "line per class sounding); a template with {name} for several inputs, e.g. 'subs/{name}.vtt'."),
]
AudacityOpt = Annotated[
    Optional[str],
    typer.Option("--audacity", metavar="FILE", help="Write the sound events as an Audacity label track "
                 "(start<TAB>end<TAB>label; File > Import > Labels); a template with {name}, "
                 "e.g. '{name}.labels.txt'."),
]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, metavar="N", help="CPU threads this command may use, in every library "
                 "(torch, BLAS, OpenMP, OpenCV, EdgeBoxes); --jobs workers share them, at least one each. "
                 "Default: OMP_NUM_THREADS when set, else the cores that other work leaves free (the CPUs "
                 "this process may use less the load), so that a busy machine is not oversubscribed."),
]


def uses_threads(fn: Callable[..., int]) -> Callable[..., int]:
    """Run a command that takes ``threads: ThreadsOpt`` under that thread budget
    (:func:`avscene.threads.thread_budget`: its variables are set before torch loads; under
    torchrun, this process's share). The batch commands get it from ``_batch.batch_command``."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> int:
        from avscene.threads import process_threads, thread_budget

        with thread_budget(process_threads(kwargs.get("threads"))):
            return fn(*args, **kwargs)

    return command
