"""The per-input output files of ``localize``, ``separate`` and ``report``: templates and the workers that write them.

What the batch runner's worker processes run for each input (:class:`avscene.tasks.runner.FileJob`),
and what a Python user calls to get files rather than results: the task, then its files.

* ``separate``: ``-o`` and ``--residual``, audio templates with ``{name}``, ``{label}``, ``{ext}``;
  the separation streams into :class:`avscene.io.writers.SeparationFiles`, which writes hidden
  temporaries renamed into place when the input is done. ``.wav`` is 32-bit float (source +
  residual add up to the input to float precision), ``.flac`` 24-bit (samples beyond ±1 clipped,
  with a warning).
* ``localize``: ``--render`` (overlay video, ``{name}``, ``{ext}``) and ``--scores-tsv DIR``
  (``DIR/{name}.tsv``, a sed_scores_eval score table).
* ``localize`` and ``report``: ``--vtt`` (WebVTT captions) and ``--audacity`` (an Audacity label
  track) of the sound events, templates with ``{name}``, ``{ext}``.
* ``report``: ``-o`` (the page, ``{name}``, ``{ext}``; a folder: ``FOLDER/{name}.html`` and
  ``FOLDER/index.html``).

Two files sum up a whole run and are written once, after every input (:class:`RunFile`):
``localize --events-tsv`` and the report folder's ``index.html``; they are checked before any
work, and with ``--resume`` cover the inputs recorded before too (read back typed from their
records, :func:`avscene.results.result_from_json`).

Every template also takes ``{relpath}``: the input's folder relative to the directory argument it
was found under (``cam1`` for ``videos/cam1/0001.mp4`` listed from ``videos/``; ``.`` for a file
directly in it or given by itself), so ``'out/{relpath}/{name}.mp4'`` mirrors the input tree.

One template filler (:func:`fill`) for all, and one check before any work
(:func:`check_outputs`), over every input of the run (all shards): a template with an unknown field,
several inputs without ``{name}``, or two inputs (or two options, or an input's output and a file
written once per run such as ``--events-tsv`` or the report's index) that would write the same file
are refused up front; ``separate`` repeats it once the model's classes are known, for every class
``{label}`` may take (:func:`check_separate`). A value substituted into a template never leaves the
folder the template names: path separators and the names ``.`` and ``..`` in a file name or label
are replaced (:func:`safe_value`). An existing file is only replaced with ``force`` (which
``--resume`` gives to the inputs it processes: their files are what an interrupted run left).
An input's files are all written or none: when one of them fails, those already written for that
input are removed.
"""

from __future__ import annotations

import dataclasses
import os
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from avscene.errors import OutputError, UsageError
from avscene.tasks.inputs import relative_folder

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel
    from avscene.results import LocalizeResult, ReportResult, SeparateResult
    from avscene.tasks.localize import LocalizeOptions
    from avscene.tasks.report import ReportOptions
    from avscene.tasks.separate import SeparateOptions

# {name}: input file name without extension; {ext}: its extension; {relpath}: its folder below the argument
TEMPLATE_FIELDS = ("name", "label", "ext", "relpath")
DEFAULT_SEPARATE_OUTPUT = "{name}.{label}.wav"
SOURCE, RESIDUAL, RENDER, SCORES_TSV = "-o", "--residual", "--render", "--scores-tsv"  # the output options
VTT, AUDACITY, PAGE = "--vtt", "--audacity", "--output"  # (PAGE: report's -o, the HTML page)
_FILE_FIELDS = ("name", "ext", "relpath")
OPTION_FIELDS = {SOURCE: TEMPLATE_FIELDS, RESIDUAL: TEMPLATE_FIELDS, RENDER: _FILE_FIELDS,
                 SCORES_TSV: ("name",), VTT: _FILE_FIELDS, AUDACITY: _FILE_FIELDS, PAGE: _FILE_FIELDS}
REPORT_INDEX = "index.html"  # a folder of report pages gets this index
_SEPARATORS = tuple(sep for sep in {"/", os.sep, os.altsep or "/"})
UNKNOWN_LABEL = "{label}"  # kept literal while checking: a predicted label is known only later


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")  # literal braces in a folder's name


def scores_tsv_template(directory: str | Path) -> str:
    """``--scores-tsv DIR`` as a template: one ``DIR/<name>.tsv`` per input."""
    return str(Path(_literal(str(directory))) / "{name}.tsv")


def report_page_template(output: str) -> tuple[str, RunFile | None]:
    """Report's ``-o`` → (page template, index or None): a folder (an existing one, a path ending
    in ``/``, or a plain path without a file extension, ``-o reports``) gets ``FOLDER/{name}.html``
    pages and ``FOLDER/index.html``; a template without an extension gets ``.html``."""
    plain = "{" not in output and "}" not in output
    if output.endswith(("/", "\\")) or Path(output).is_dir() or (plain and not Path(output).suffix):
        folder = Path(output)
        return str(Path(_literal(str(folder))) / "{name}.html"), RunFile("index", folder / REPORT_INDEX)
    if not Path(output).suffix:
        output += ".html"
    return output, None


def template_fields(template: str, *, option: str) -> set[str]:
    """The placeholders of an output template; raises UsageError on unknown ones or bad syntax."""
    allowed = OPTION_FIELDS.get(option, TEMPLATE_FIELDS)
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise UsageError(f"{option} {template!r}: {e}; write literal braces as {{{{ and }}}}") from e
    bad = sorted(f for f in fields if f not in allowed)
    if bad:
        raise UsageError(f"{option} {template!r}: unknown placeholder(s) {bad}; use "
                         f"{', '.join('{' + f + '}' for f in allowed)}")
    return fields


def safe_value(value: str) -> str:
    """``value`` made safe to substitute into a path template: one path component, inside its folder.

    Path separators become ``_``, and so does every dot of a value made only of dots (``.``,
    ``..``, ``...``: a stem of ``....mp4``), so a substituted value never names a parent folder,
    the folder itself or a subfolder. An empty value becomes ``_``.
    """
    for sep in _SEPARATORS:
        value = value.replace(sep, "_")
    value = value.replace("\0", "_")
    if value.strip(".") == "":
        value = "_" * max(1, len(value))
    return value


def fill(template: str, src: Path, label: str = UNKNOWN_LABEL, roots: Sequence[str | Path] = ()) -> Path:
    """The output path of input ``src`` (separated as ``label``) under ``template``.

    ``{label}`` left as :data:`UNKNOWN_LABEL` stays literal (for checks before the label is known).
    ``roots`` are the run's directory arguments, for ``{relpath}`` (:func:`avscene.tasks.inputs.relative_folder`).
    """
    relpath = relative_folder(src, roots) if "relpath" in template else ""
    return Path(_filled(template, _values(src, relpath), label))


def _values(src: Path, relpath: str) -> dict[str, str]:
    """The per-input values of a template's placeholders (all but ``{label}``)."""
    return {"name": safe_value(src.stem), "ext": safe_value(src.suffix.lstrip(".")), "relpath": relpath}


def _filled(template: str, values: dict[str, str], label: str) -> str:
    return template.format(**values, label=label if label == UNKNOWN_LABEL else safe_value(label))


def check_outputs(templates: Mapping[str, str], files: Sequence[Path], *, n_all: int | None = None,
                  once: Mapping[str, Path] | None = None, roots: Sequence[str | Path] = (),
                  labels: Sequence[str] | None = None) -> None:
    """Refuse, before any work, templates that are invalid or would make two outputs share a file.

    Args:
        templates: output option (``-o``, ``--render``...) → template.
        files: every input of the run (of every shard: a clash with another shard's input is one too).
        n_all: inputs of the whole run when ``files`` is fewer (default ``len(files)``);
            with more than one, every template needs ``{name}``.
        once: files written once per run (``--events-tsv``, the report's index): option → path;
            an input's output may not be one of them.
        roots: the directory arguments, for ``{relpath}``.
        labels: every value ``{label}`` may take (the model's classes, or the one given); None:
            not known yet, ``{label}`` is kept literal.

    Raises:
        UsageError: the first problem found, naming the option and the inputs concerned.
    """
    from avscene.io.writers import AUDIO_FORMATS  # .wav float32, .flac 24-bit

    n_all = len(files) if n_all is None else n_all
    fields_of: dict[str, set[str]] = {}
    for option, template in templates.items():
        fields = fields_of[option] = template_fields(template, option=option)
        if n_all > 1 and "name" not in fields:
            example = "'out/{name}.{label}.wav'" if "label" in OPTION_FIELDS.get(option, ()) else "'out/{name}.mp4'"
            raise UsageError(f"{option} {template!r}: with several inputs the output needs a {{name}} "
                             f"placeholder, e.g. {example}")
        suffix = fill(template, Path("x.mp4"), "x").suffix.lower()
        if option in (SOURCE, RESIDUAL) and suffix not in AUDIO_FORMATS:
            raise UsageError(f"{option} {template!r}: write .wav (32-bit float) or .flac (24-bit)")
        if option == RENDER:
            from avscene.io.render import CONTAINER_BY_SUFFIX  # the containers the overlay is written in

            if suffix not in CONTAINER_BY_SUFFIX:
                raise UsageError(f"{option} {template!r}: the overlay is a video; name it "
                                 f"{' or '.join(sorted(CONTAINER_BY_SUFFIX))}")
    folders: dict[str, str] = {}  # a folder → resolved, once per folder (not per output: 10^5 inputs)
    relpaths: dict[Path, str] = {}  # an input's folder → {relpath}

    def key(path: str) -> str:  # strings, not Paths: Path() costs more than the rest together
        folder, name = os.path.split(path)
        if folder not in folders:
            folders[folder] = str(Path(folder).resolve())
        return os.path.join(folders[folder], name)

    fixed = {key(os.path.normpath(path)): option for option, path in (once or {}).items()}
    seen: dict[str, tuple[str, Path, str]] = {}
    for f in files or [Path("x.mp4")]:
        if f.parent not in relpaths:
            relpaths[f.parent] = relative_folder(f, roots)
        values = _values(f, relpaths[f.parent])
        for option, template in templates.items():
            own: set[str] = set()  # one input's outputs under one option (one per label)
            for label in (labels or [UNKNOWN_LABEL]) if "label" in fields_of[option] else [UNKNOWN_LABEL]:
                k = key(os.path.normpath(_filled(template, values, label)))
                if k in fixed:
                    raise UsageError(f"{option} {template!r}: the output of {f} would be {k}, the file of "
                                     f"{fixed[k]}; give one of them another name")
                if k in seen and not (k in own and seen[k][0] == option):
                    _clash(option, template, seen[k], (option, f, label), k)
                own.add(k)
                seen[k] = (option, f, label)


def _clash(option: str, template: str, first: tuple[str, Path, str], second: tuple[str, Path, str],
           path: str) -> None:
    """Raise the UsageError of two outputs that would be one file."""
    (other_option, other, other_label), (_, f, label) = first, second
    if other_option != option:
        raise UsageError(f"{other_option} and {option} name the same file {path}; give one of them another name")
    if label != UNKNOWN_LABEL and other_label != label:
        raise UsageError(f"{option} {template!r}: {other} separated as {other_label!r} and {f} as {label!r} would "
                         f"write the same file {path}; separate the fields, e.g. '{{name}}/{{label}}.wav'")
    fix = "rename one" if option == SCORES_TSV else "add {relpath} (the input's folder) or {ext} to the template"
    raise UsageError(f"{option} {template!r}: {other} and {f} would write the same file {path}; {fix} or "
                     "process them in two runs")


def _check_free(paths: Sequence[Path], src: Path, *, force: bool) -> None:
    """Fail this input (OutputError) if an output exists without ``force`` or is the input itself."""
    for p in paths:
        if p.resolve() == src.resolve():
            raise OutputError(f"{p} is the input file itself; choose another output name")
        if p.exists() and not force:
            raise OutputError(f"{p} already exists; pass --force to overwrite it")


@dataclass(frozen=True)
class WriteOptions:
    """What a (worker) process needs to run a task on one input and write its files."""

    task: LocalizeOptions | SeparateOptions | ReportOptions  # the task's own options
    templates: dict[str, str]  # output option (SOURCE, RESIDUAL, RENDER, SCORES_TSV, VTT...) → template
    force: bool = False  # overwrite existing files
    roots: tuple[str, ...] = ()  # the directory arguments, for {relpath}
    inputs: tuple[Path, ...] = ()  # every input of the run: check_separate checks them for every {label}


@contextmanager
def all_or_none() -> Iterator[list[Path]]:
    """Collect the files written for one input; if a later step fails, remove them again, so that
    an input has all of its outputs or none (a hard kill aside: ``--resume`` replaces those)."""
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- files of a whole run


@dataclass(frozen=True)
class RunFile:
    """A file written once per run, after every input, from all of their results: ``localize
    --events-tsv`` (``"events"``) or a report folder's ``index.html`` (``"index"``, always replaced:
    it describes the folder as it is now)."""

    what: Literal["events", "index"]
    path: Path
    force: bool = False  # replace an existing events TSV (the index is always replaced)

    @property
    def option(self) -> str:
        """The option that names the file, as messages and :func:`check_outputs` call it."""
        return "--events-tsv" if self.what == "events" else f"-o (its {REPORT_INDEX})"

    def check(self, files: Sequence[Path]) -> None:
        """Refuse, before any work, a file that exists (without ``force``) or cannot be written, and
        input names an events TSV cannot hold.

        Raises:
            OutputError: naming the file or the input.
        """
        from avscene.io.writers import check_events_tsv_names, check_writable

        if self.what == "events":
            check_events_tsv_names(files)
        check_writable(self.path, force=self.force or self.what == "index")

    def write(self, files: Sequence[Path], results: Iterable[Any], recorded: Mapping[str, dict]) -> Path:
        """Write the file from this run's ``results`` and the ``recorded`` JSON records of the inputs
        it skipped (``--resume``: file → record), in the order of ``files``; failed inputs add nothing."""
        from avscene.io.report_html import write_index
        from avscene.io.writers import write_events_tsv
        from avscene.results import LocalizeResult, ReportResult

        kind = LocalizeResult if self.what == "events" else ReportResult
        typed = run_results(files, results, recorded, kind)
        if self.what == "events":
            return write_events_tsv(typed, self.path, force=self.force)
        return write_index([r.to_json() for r in typed], self.path)


def run_results(files: Sequence[Path], results: Iterable[Any], recorded: Mapping[str, dict], kind: type) -> list[Any]:
    """The successful results of ``kind`` over ``files``, in their order: this run's, else the one
    read back from the input's record (:func:`avscene.results.result_from_json`)."""
    from avscene.results import result_from_json

    new = {r.file: r for r in results}
    out = [new[f] if f in new else result_from_json(recorded[f]) for f in map(str, files) if f in new or f in recorded]
    return [r for r in out if isinstance(r, kind)]


# --------------------------------------------------------------------------- separate


def separate_and_write(src: Path, *, loaded: LoadedModel, opts: WriteOptions) -> SeparateResult:
    """Separate one input, streaming its file(s) to disk; returns the result with the paths filled in.

    The outputs are written chunk by chunk to temporary names and renamed into place
    only when the whole input is done, so memory does not grow with the input's
    length and a failure leaves no partial file.
    """
    from contextlib import ExitStack

    from avscene.io.writers import SeparationFiles
    from avscene.tasks.separate import SeparateOptions, separate_stream

    task, templates, force = opts.task, opts.templates, opts.force
    assert isinstance(task, SeparateOptions)  # internal: built by the separate command
    if task.label is not None:  # fail fast, before the separation work
        _check_free([fill(t, src, task.label, opts.roots) for t in templates.values()], src, force=force)
    named: dict[str, Path] = {}

    def name(label: str) -> tuple[Path, Path | None]:
        named.update({k: fill(t, src, label, opts.roots) for k, t in templates.items()})
        _check_free(list(named.values()), src, force=force)
        return named[SOURCE], named.get(RESIDUAL)

    with ExitStack() as stack:
        files = SeparationFiles(stack, name, force=force)
        r = separate_stream(src, loaded, task, files)
    clipped = [f"{w.path}: samples beyond ±1 were clipped (write .wav to keep them)"
               for w in (files.source, files.residual) if w is not None and w.clipped]
    return dataclasses.replace(r, source_path=str(named[SOURCE]), warnings=(*r.warnings, *clipped),
                               residual_path=str(named[RESIDUAL]) if RESIDUAL in named else None)


def check_separate(opts: WriteOptions, loaded: LoadedModel) -> WriteOptions:
    """Refuse a bad label or option once, before any input; returns ``opts`` with the method
    resolved for this model (``auto`` decided once per run, not per input)."""
    from avscene.tasks.separate import SeparateOptions, check_options

    assert isinstance(opts.task, SeparateOptions)  # internal: built by the separate command
    method, _ = check_options(opts.task, loaded)
    if opts.inputs:  # every class {label} may take is known now: no two inputs may meet under one
        labels = [opts.task.label] if opts.task.label is not None else list(loaded.labels)
        check_outputs(opts.templates, opts.inputs, roots=opts.roots, labels=labels)
    return dataclasses.replace(opts, task=dataclasses.replace(opts.task, method=method.name))


# --------------------------------------------------------------------------- localize


def localize_and_write(src: Path, *, loaded: LoadedModel, opts: WriteOptions) -> LocalizeResult:
    """Localize one input and write its score TSV, overlay video, captions and label track (those
    asked for); a writer failure fails the input."""
    from avscene.io.render import render_overlay
    from avscene.io.writers import atomic_write_text, scores_tsv_text
    from avscene.tasks.localize import LocalizeOptions, localize_file

    assert isinstance(opts.task, LocalizeOptions)  # internal: built by the localize command
    tsv = SCORES_TSV in opts.templates
    r = localize_file(src, loaded, dataclasses.replace(opts.task, audio_all_classes=tsv))
    with all_or_none() as written:
        if tsv:  # every class's scores go to the table only: the result keeps the reported classes'
            path = fill(opts.templates[SCORES_TSV], src, roots=opts.roots)
            written.append(atomic_write_text(path, scores_tsv_text(r, class_names=list(loaded.labels)),
                                             force=opts.force))
            r = dataclasses.replace(r, audio={k: v for k, v in r.audio.items() if k in r.timing})
        if RENDER in opts.templates:
            path = fill(opts.templates[RENDER], src, roots=opts.roots)
            render_overlay(r.file, r, path, force=opts.force)
            written.append(path)
        write_event_files(r, src, opts, written)
    return r


def write_event_files(r: LocalizeResult, src: Path, opts: WriteOptions, written: list[Path]) -> None:
    """The ``--vtt`` captions and ``--audacity`` label track of one input's events, where asked for
    (appended to ``written``)."""
    from avscene.io.captions import write_audacity, write_webvtt

    for option, write in ((VTT, write_webvtt), (AUDACITY, write_audacity)):
        if option in opts.templates:
            written.append(write(r.events, fill(opts.templates[option], src, roots=opts.roots), force=opts.force,
                                 status=r.status))


def check_localize(opts: WriteOptions, loaded: LoadedModel) -> None:
    """Refuse an unknown --label once, before any input (a usage error, not N failed inputs)."""
    from avscene.tasks.localize import LocalizeOptions, resolve_labels
    from avscene.tasks.report import ReportOptions

    task = opts.task.localize if isinstance(opts.task, ReportOptions) else opts.task
    assert isinstance(task, LocalizeOptions)  # internal: built by the localize or report command
    resolve_labels(task.labels, (), list(loaded.labels))


# --------------------------------------------------------------------------- report


def check_report(opts: WriteOptions, loaded: LoadedModel) -> WriteOptions:
    """Refuse an unknown --label and, with ``--separate``, a ``--method`` this model cannot run, once
    before any input (the usage errors of ``localize`` and ``separate``, with their messages);
    returns ``opts`` with the method resolved for this model."""
    from avscene.tasks.report import ReportOptions
    from avscene.tasks.separate import SeparateOptions, method_for

    check_localize(opts, loaded)
    assert isinstance(opts.task, ReportOptions)  # internal: built by the report command
    if not opts.task.separate:
        return opts
    method = method_for(SeparateOptions(method=opts.task.separate_method), loaded)
    return dataclasses.replace(opts, task=dataclasses.replace(opts.task, separate_method=method.name.value))


def report_and_write(src: Path, *, loaded: LoadedModel, opts: WriteOptions) -> ReportResult:
    """Build one input's report and write its page (and the tracks too long to embed, beside it),
    its captions and its label track; a writer failure fails the input."""
    from avscene.io.report_html import thumb_uri, write_report
    from avscene.results import ReportResult
    from avscene.tasks.report import ReportOptions, build_page

    assert isinstance(opts.task, ReportOptions)  # internal: built by the report command
    page = build_page(src, loaded, opts.task, version=opts.task.version)
    r = page.localization
    with all_or_none() as written:
        written += write_report(page, fill(opts.templates[PAGE], src, roots=opts.roots), force=opts.force)
        write_event_files(r, src, opts, written)
    return ReportResult(localization=r, page=str(written[0]), presence=page.presence,
                        files=tuple(map(str, written[1:])), left_out=page.left_out,
                        poster=None if page.poster is None else thumb_uri(page.poster),
                        separations=page.separations)


__all__ = ["AUDACITY", "DEFAULT_SEPARATE_OUTPUT", "PAGE", "RENDER", "REPORT_INDEX", "RESIDUAL", "SCORES_TSV", "SOURCE",
           "TEMPLATE_FIELDS", "VTT", "RunFile", "WriteOptions", "all_or_none", "check_localize", "check_outputs", "check_report", "check_separate", "fill",
           "localize_and_write", "report_and_write", "report_page_template", "run_results", "safe_value", "scores_tsv_template",
           "separate_and_write", "template_fields", "write_event_files"]
