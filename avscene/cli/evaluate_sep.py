"""``avscene evaluate-separation``: SDR / SI-SDR of avscene and baselines on a separation set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from avscene.cli._options import (
    DeviceOpt,
    HubTimeoutOpt,
    ModelOpt,
    OfflineOpt,
    ReportForceOpt,
    ReportJsonOpt,
    ReportJsonOutOpt,
    RevisionOpt,
    ThreadsOpt,
    uses_threads,
)
from avscene.cli._output import check_report_path, emit_report
from avscene.errors import UsageError

EPILOG = """Examples:

  avscene evaluate-separation ../shared/avbench/val/sep --model runs/av

  avscene evaluate-separation ../shared/avbench/val/sep --limit 6 --json-out sep.json

  # two sources: the clips where two classes sound, and synthetic duets at -5, 0, +5 dB
  avscene evaluate-separation ../shared/avbench/val_shift --pairs --per-cell 6

  # the two-source hold-out of training clips (the only set to choose on)
  avscene evaluate-separation ../shared/avbench/train --pairs --holdout

  # remixes of a teacher cache's held-out estimates (train-separator --objective remix)
  avscene evaluate-separation runs/remix/teacher --pairs --remix

  # once, so that the supervised-NMF baseline has dictionaries to use:
  avscene train-dictionaries runs/av ../shared/avbench/train/labels.csv
  avscene evaluate-separation SEP_DIR --model runs/av
"""


def report_tables(rep) -> list[Table]:
    """Methods × SNR: mean SDR, then mean SI-SDR (dB)."""
    from avscene.evaluation.evaluate_sep import format_rows

    cols = [*[f"{s:+g} dB" for s in rep.snrs], "all"]
    tables = []
    for metric, name in (("sdr", "SDR"), ("si_sdr", "SI-SDR")):
        # a local model is named by its folder: reports (and model cards quoting them) carry no machine path
        model = Path(rep.model["id"]).name if Path(rep.model["id"]).is_dir() else rep.model["id"]
        t = Table("method", *cols, title=f"mean {name} (dB), {rep.n_mixtures} mixtures, model {model}")
        for row in format_rows(rep, metric):
            t.add_row(*row)
        tables.append(t)
    return tables


def pair_tables(rep) -> list[Table]:
    """Per set (clips, duets, hold-out): methods × pair kind (and SNR), SDR, SDR improvement, SI-SDR."""
    from avscene.evaluation.evaluate_pairs import METRICS, SETS, format_pair_rows

    model = Path(rep.model["id"]).name if Path(rep.model["id"]).is_dir() else rep.model["id"]
    tables = []
    for set_name in SETS:
        for metric, name in METRICS:
            groups, rows = format_pair_rows(rep, set_name, metric)
            if not groups:
                continue
            t = Table("method", *groups, title=f"{set_name}: mean {name} (dB), model {model}")
            for row in rows:
                t.add_row(*row)
            tables.append(t)
    return tables


@uses_threads
def evaluate_sep_cmd(
    sep_dir: Annotated[Path, typer.Argument(help="Separation set: sep.csv (mixture,label,snr_db,group), "
                                            "clips/<mixture>.mp4, stems/<mixture>/<label>.flac.")],
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = "auto",
    offline: OfflineOpt = False,
    hub_timeout: HubTimeoutOpt = None,
    threads: ThreadsOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N mixtures.")] = None,
    components: Annotated[int, typer.Option("--components", "-k", min=1, help="NMF components.")] = 20,
    train_manifest: Annotated[Optional[Path], typer.Option(help="Training labels.csv for the dictionaries when "
                                                           "the model has none (default: SEP_DIR/../../train/"
                                                           "labels.csv).")] = None,
    pairs: Annotated[bool, typer.Option("--pairs", help="Two sources: SEP_DIR is a split with stems "
                                        "(val/, val_shift/): its clips where two classes sound, and "
                                        "synthetic duets of two stems at -5, 0, +5 dB.")] = False,
    holdout: Annotated[bool, typer.Option("--holdout", help="With --pairs: SEP_DIR is the training folder; "
                                          "pairs of its held-out single-label clips (the targets their "
                                          "soundtracks).")] = False,
    remix: Annotated[bool, typer.Option("--remix", help="With --pairs: SEP_DIR is a teacher cache (train-separator "
                                        "--teacher-cache); remixes of its held-out clips' teacher estimates "
                                        "with a third clip's residual, scored against the teacher's "
                                        "estimates.")] = False,
    per_cell: Annotated[int, typer.Option(min=1, help="With --pairs: duets per pair kind and SNR.")] = 8,
    seed: Annotated[int, typer.Option(help="With --pairs: the seed that draws the duets.")] = 0,
    set_default: Annotated[bool, typer.Option("--set-default", help="With --pairs --holdout and a local "
                                              "--model folder: record the method with the best mean SDR "
                                              "on the hold-out (one and two sources together) as the "
                                              "model's default (separate/report --method auto).")] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", metavar="METHOD", help="With --pairs: only these methods "
                                                      "(repeatable; default every one the model carries).")] = None,
    json_out: ReportJsonOutOpt = None,
    json_flag: ReportJsonOpt = False,
    force: ReportForceOpt = False,
) -> int:
    """Evaluate separation: avscene (soft, τ=0.1, τ=0.2; label known/unknown) against baselines."""
    from rich.console import Console
    from rich.progress import Progress

    from avscene.proposals.nmf import NMFOptions
    from avscene.tasks.models import load_model
    from avscene.evaluation.evaluate_sep import dictionaries_for, evaluate_separation

    if remix and not pairs:
        raise UsageError("--remix goes with --pairs")
    if holdout and remix:
        raise UsageError("--holdout and --remix are two different sets: ask for one at a time")
    check_report_path(json_out, force=force)
    loaded = load_model(model, revision=revision, offline=offline, device=device, hub_timeout=hub_timeout)
    if pairs:
        if set_default and not (holdout and model is not None and Path(model).is_dir() and not only):
            raise UsageError("--set-default needs --pairs --holdout, a local --model folder and every method "
                             "(no --only): the default is chosen on the training hold-out only")
        return _pairs(loaded, sep_dir, holdout=holdout, remix=remix, per_cell=per_cell, seed=seed, only=only,
                      set_default=Path(model) if set_default and model is not None else None,
                      components=components, train_manifest=train_manifest, json_out=json_out,
                      json_flag=json_flag, force=force)
    manifest = train_manifest or Path(sep_dir).resolve().parent.parent / "train" / "labels.csv"
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("dictionaries", total=None)
        dicts = dictionaries_for(loaded, sep_dir, manifest, limit=limit,
                                 progress=lambda d, n: bar.update(task, completed=d, total=n))
        bar.update(task, description="separate", completed=0, total=None)
        rep = evaluate_separation(loaded, sep_dir, dictionaries=dicts, nmf=NMFOptions(k=components), limit=limit,
                                  progress=lambda d, n: bar.update(task, completed=d, total=n))
    emit_report(rep, report_tables(rep), json_out=json_out, json_flag=json_flag, force=force)
    return 1 if rep.failed else 0


def _pairs(loaded, split: Path, *, holdout: bool, remix: bool, per_cell: int, seed: int, only: list[str] | None,
           set_default: Path | None,
           components: int, train_manifest: Path | None, json_out, json_flag: bool, force: bool) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from avscene.proposals.nmf import NMFOptions
    from avscene.separation.registry import parse_method
    from avscene.train.dictionaries import learn_from_manifest
    from avscene.evaluation.evaluate_pairs import evaluate_pairs

    methods = [parse_method(m) for m in only] if only else None
    manifest = train_manifest or (split / "labels.csv" if holdout else split.resolve().parent / "train" / "labels.csv")
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("dictionaries", total=None)
        dicts = loaded.separation.dictionaries or learn_from_manifest(
            manifest, list(loaded.labels), progress=lambda d, n: bar.update(task, completed=d, total=n))
        bar.update(task, description="separate", completed=0, total=None)
        rep = evaluate_pairs(loaded, split, dictionaries=dicts, nmf=NMFOptions(k=components), per_cell=per_cell,
                             seed=seed, only=methods,
                             sets=("holdout",) if holdout else ("remix",) if remix else ("clips", "duets"),
                             progress=lambda d, n: bar.update(task, completed=d, total=n))
    emit_report(rep, pair_tables(rep), json_out=json_out, json_flag=json_flag, force=force)
    if set_default is not None:
        from avscene.checkpoint.parts import set_default_method
        from avscene.evaluation.evaluate_pairs import method_ranking

        ranking = method_ranking(rep)
        set_default_method(set_default, ranking[0][0])
        listed = ", ".join(f"{m} {v:+.2f} dB" for m, v in ranking)
        Console(stderr=True).print(f"default method → {ranking[0][0]} (hold-out mean SDR: {listed})")
    return 1 if rep.failed else 0
