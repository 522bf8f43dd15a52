"""``avscene separate``: write the sound of one class (and optionally the rest) of each input.

A thin front end over :mod:`avscene.tasks.outputs` (templates, the worker that
separates one input into its files) and the batch runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Optional, cast

import typer
from rich.table import Table

from avscene.cli._batch import CommonArgs, batch_command, execute, plan
from avscene.cli._options import PathsArg
from avscene.cli._output import Sink
from avscene.separation.registry import MethodName, method_help
from avscene.tasks.outputs import DEFAULT_SEPARATE_OUTPUT as DEFAULT_OUTPUT

if TYPE_CHECKING:
    from avscene.dsp.nmf import Divergence

EPILOG = """Examples:

  avscene separate clip.mp4 --label violin -o violin.wav --residual rest.wav

  avscene separate clip.mp4 --threshold 0.1 --json      (label: the top predicted class)

  avscene separate videos/ --label drum -o 'out/{name}.{label}.wav' --jsonl sep.jsonl --jobs 2

Templates: {name} = input file name without extension, {label} = the class separated,
{ext} = input extension, {relpath} = the input's folder below the directory argument
(videos/cam1/0001.mp4 from videos/: cam1), e.g. -o 'out/{relpath}/{name}.{label}.wav'.
Default -o: '{name}.{label}.wav' in the current folder. Two inputs whose outputs could be one
file (under any class {label} may take, over every input of every --shard) are refused
before any work (exit 2).
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


@batch_command()
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
    method: Annotated[MethodName, typer.Option(help=method_help())] = MethodName.AUTO,
    components: Annotated[int, typer.Option("--components", "-k", min=1, help="NMF components (ncp).")] = 20,
    divergence: Annotated[str, typer.Option(help="NMF divergence: kl (magnitude) or is (power).")] = "kl",
    output_rate: Annotated[Literal["model", "input"], typer.Option(help="model (16 kHz) or input (the input's "
                                                                   "sample rate).")] = "model",
    chunk_seconds: Annotated[float, typer.Option(min=2.0, help="Longer inputs are separated in chunks "
                                                 "of this length (one NMF each), cross-faded over 1 s; "
                                                 "memory does not grow with the input.")] = 30.0,
    *,
    common: CommonArgs,
) -> int:
    """Separate the sound of one class from each input (mask network, dictionaries, or NMF components ranked by the audio network)."""
    from avscene.proposals.nmf import NMFOptions
    from avscene.tasks.outputs import RESIDUAL, SOURCE, check_separate, separate_and_write
    from avscene.tasks.runner import FileJob
    from avscene.tasks.separate import SeparateOptions

    p = plan(paths, common.batch())
    templates = {SOURCE: output or DEFAULT_OUTPUT, **({RESIDUAL: residual} if residual else {})}
    opts = SeparateOptions(label=label, threshold=threshold, output_rate=output_rate,
                           nmf=NMFOptions(k=components, divergence=cast("Divergence", divergence)),  # checked with
                           chunk_seconds=chunk_seconds,  # the other options, before any input (check_options)
                           method=method, any_format=common.any_format)
    job = FileJob(separate_and_write, common.model_spec(), p.outputs(opts, templates, common), check_separate)
    return execute(p, job, Sink(mode=common.mode(), table=separate_table, log=p.log), common.batch(),
                   label="separate")
