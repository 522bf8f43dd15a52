"""``avscene report``: one self-contained HTML page per input, and an index of a folder of them."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer
from rich.table import Table

from avscene.cli._batch import ClassifierArgs, CommonArgs, batch_command, execute, plan
from avscene.cli._options import AudacityOpt, EventThresholdOpt, LabelsOpt, PathsArg, VttOpt
from avscene.cli._output import Sink
from avscene.separation.registry import MethodName
from avscene.tasks.report import MAX_EMBED_SECONDS, MAX_THUMBNAILS

EPILOG = """Examples:

  avscene report clip.mp4 -o clip.html

  avscene report videos/ -o reports/            (one page per video and reports/index.html)

  avscene report clip.mp4 -o 'reports/{name}.html' --separate --vtt 'reports/{name}.vtt'

  avscene report long.mp4 -o long.html --max-thumbnails 40 --max-embed-seconds 60

A folder as -o (an existing one, or a path ending in /) gets {name}.html per input and an
index.html listing them (sortable, filterable by class; open it in any browser, no server).
Templates also take {ext} and {relpath} (the input's folder below the directory argument:
-o 'reports/{relpath}/{name}.html'); two inputs that would write one file are refused (exit 2).
"""


def report_table(results) -> Table:
    t = Table("file", "page", "classes (heard / seen / heard and seen, anywhere in the input)")
    t.columns[0].overflow = t.columns[1].overflow = "fold"
    for r in results:
        t.add_row(r.file, r.page, ", ".join(f"{k} ({v.replace('_', ' ')})" for k, v in r.presence.items()) or "—")
    return t


@batch_command(classifier=True)
def report_cmd(
    paths: PathsArg,
    output: Annotated[str, typer.Option("--output", "-o", help="The page: a file, a template with {name}, or a "
                                        "folder: one that exists, ends in / or has no extension (then also FOLDER/index.html).")] = "reports/",
    separate: Annotated[bool, typer.Option("--separate", help="Also separate each predicted class: players "
                                           "for its source and the residual.")] = False,
    method: Annotated[MethodName, typer.Option(help="Separation method with --separate (see `avscene "
                                               "separate --help`).")] = MethodName.AUTO,
    max_thumbnails: Annotated[int, typer.Option(min=0, help="Frames shown per class, evenly spaced over the "
                                                "sampled ones (long inputs).")] = MAX_THUMBNAILS,
    max_embed_seconds: Annotated[float, typer.Option(min=0.0, help="Audio up to this long is embedded in the "
                                                     "page; longer tracks are written beside it (Ogg/Opus) "
                                                     "and linked.")] = MAX_EMBED_SECONDS,
    label: LabelsOpt = None,
    event_threshold: EventThresholdOpt = 0.0,
    vtt: VttOpt = None,
    audacity: AudacityOpt = None,
    *,
    common: CommonArgs,
    classifier: ClassifierArgs,
) -> int:
    """Write one self-contained HTML report per input: classes, timeline with frames, audio players."""
    from avscene import __version__
    from avscene.cli._errors import ARGV
    from avscene.tasks.localize import LocalizeOptions
    from avscene.tasks.outputs import AUDACITY, PAGE, VTT, check_report, report_and_write, report_page_template
    from avscene.tasks.report import ReportOptions
    from avscene.tasks.runner import FileJob

    p = plan(paths, common.batch())
    template, index = report_page_template(output)
    templates = {PAGE: template, **({VTT: vtt} if vtt else {}), **({AUDACITY: audacity} if audacity else {})}
    loc = LocalizeOptions(labels=tuple(label or ()), event_threshold=event_threshold,
                          classify=classifier.classify_options(any_format=common.any_format))
    opts = ReportOptions(localize=loc, max_thumbnails=max_thumbnails, max_embed_seconds=max_embed_seconds,
                         separate=separate, separate_method=method.value, command=shlex.join(["avscene", *ARGV]),
                         version=__version__)
    outputs = p.outputs(opts, templates, common, run_file=index)  # a bad template, a clash: refused up front
    job = FileJob(report_and_write, common.model_spec(), outputs, check_report)
    sink = Sink(mode=common.mode(), table=report_table, log=p.log)
    return execute(p, job, sink, common.batch(), label="report", run_file=index)
