"""``avscene separate``: write the sound of one class (and optionally the rest) of each input.

A thin front end over :mod:`avscene.tasks.separate_files` (templates, the worker that
separates one input into its files) and the batch runner.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from avscene.cli._batch import BatchOptions, execute, plan
from avscene.cli._options import (
    AnyFormatOpt,
    DeviceOpt,
    HubTimeoutOpt,
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
from avscene.tasks.separate_files import DEFAULT_OUTPUT, WriteOptions, check_job, check_templates, separate_and_write

EPILOG = """Examples:

  avscene separate clip.mp4 --label violin -o violin.wav --residual rest.wav

  avscene separate clip.mp4 --threshold 0.1 --json      (label: the top predicted class)

  avscene separate videos/ --label drum -o 'out/{name}.{label}.wav' --jsonl sep.jsonl --jobs 2

Templates: {name} = input file name without extension, {label} = the class separated,
{ext} = input extension. Default -o: '{name}.{label}.wav' in the current folder.
"""

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
    method: Annotated[str, typer.Option(help="auto (the model's measured best, else the first it carries "
                                        "of hybrid, mask, dictionary, ncp; ncp whenever --threshold is "
                                        "given), hybrid (the mean of the mask and dictionary masks), mask (the "
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
    any_format: AnyFormatOpt = False,
    hub_timeout: HubTimeoutOpt = None,
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
                           chunk_seconds=chunk_seconds, method=method,  # type: ignore[arg-type]
                           any_format=any_format)
    spec = ModelSpec(model, revision=revision, offline=offline, device=device, hub_timeout=hub_timeout)
    job = FileJob(separate_and_write, spec, WriteOptions(opts, templates, force), check_job)
    return execute(p, job, Sink(mode=mode, table=separate_table, log=p.log), batch, label="separate")
