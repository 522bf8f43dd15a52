"""The batch flags shared by ``classify``, ``localize``, ``report`` and ``separate``, and one driver for them.

The flags are declared once, here: :func:`batch_command` adds them to a command (the
model, device, output mode, ``--jsonl``/``--resume``, ``--jobs``, ``--timeout``, ``--shard``,
``--force``, ``--any-format``, ``--hub-timeout``, ``--threads``; with ``classifier=True`` also ``--top-k``,
``--threshold``, ``--audio-threshold``, ``--visual-threshold``, ``--edge-model``) and
hands them to it as one :class:`CommonArgs` (and :class:`ClassifierArgs`). A command calls
:func:`plan` (inputs, shard, what ``--resume`` skips), then :func:`execute` with a picklable
job (:class:`avscene.tasks.runner.FileJob`) and its :class:`~avscene.cli._output.Sink`.
The logic lives in :mod:`avscene.tasks.runner`; this module only wires flags and messages.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avscene.cli._errors import EXIT_INPUT_FAILED, EXIT_OK, verbose
from avscene.cli._options import (
    AnyFormatOpt,
    AudioThresholdOpt,
    DeviceOpt,
    EdgeModelOpt,
    ForceOpt,
    HubTimeoutOpt,
    JobsOpt,
    JsonlOpt,
    JsonOpt,
    ModelOpt,
    OfflineOpt,
    ResumeOpt,
    RetryFailedOpt,
    RevisionOpt,
    ShardOpt,
    ThreadsOpt,
    ThresholdOpt,
    TimeoutOpt,
    TopKOpt,
    VisualThresholdOpt,
)
from avscene.tasks.runner import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from avscene.cli._output import Sink
    from avscene.tasks.classify import ClassifyOptions
    from avscene.tasks.outputs import RunFile, WriteOptions
    from avscene.tasks.runner import ModelSpec, ResultLog, Setup

STDOUT = "-"  # --jsonl - : the records go to stdout


@dataclass(frozen=True)
class BatchOptions:
    """The batch flags of one command run."""

    jobs: int = 1  # worker processes; 1: this process
    timeout: float | None = None  # seconds per input; None or 0: no limit
    shard: str | None = None  # "I/N": shard I of N of the sorted inputs
    jsonl: str | None = None  # JSONL records: a file, "-" (stdout) or None
    resume: bool = False  # skip inputs recorded in the jsonl file, append to it
    retry_failed: bool = False  # with resume: process inputs recorded as failed again
    force: bool = False  # overwrite outputs, and an existing jsonl file without resume


@dataclass(frozen=True)
class CommonArgs:
    """The flags of every batch command (declared once: :func:`batch_command`)."""

    model: str | None = None  # --model: a folder or a Hub repo id; None: the bundled model
    revision: str | None = None  # --revision of a Hub repo
    device: str = "auto"  # --device
    offline: bool = False  # --offline: the HF cache only
    json_out: bool = False  # --json: one JSON document
    jsonl: str | None = None  # --jsonl FILE ("-": stdout)
    resume: bool = False  # --resume
    retry_failed: bool = False  # --retry-failed
    force: bool = False  # --force: overwrite outputs
    jobs: int = 1  # --jobs
    timeout: float = DEFAULT_TIMEOUT_S  # --timeout, seconds per input
    shard: str | None = None  # --shard I/N
    any_format: bool = False  # --any-format: also decode containers/codecs outside avscene.io.formats
    hub_timeout: float | None = None  # --hub-timeout: seconds a Hub request may wait; None: the default
    threads: int | None = None  # --threads: CPU threads of the run, workers included; None: the free cores

    @property
    def overwrite(self) -> bool:
        """Outputs may replace existing files: ``--force``, or ``--resume`` (an input without a record
        has only what an interrupted run left)."""
        return self.force or self.resume

    def batch(self) -> BatchOptions:
        return BatchOptions(jobs=self.jobs, timeout=self.timeout, shard=self.shard, jsonl=self.jsonl,
                            resume=self.resume, retry_failed=self.retry_failed, force=self.force)

    def model_spec(self) -> ModelSpec:
        from avscene.tasks.runner import ModelSpec

        return ModelSpec(self.model, revision=self.revision, offline=self.offline, device=self.device,
                         hub_timeout=self.hub_timeout)

    def mode(self) -> str:
        from avscene.cli._output import output_mode

        return output_mode(self.json_out, self.jsonl)


@dataclass(frozen=True)
class ClassifierArgs:
    """The classifier's flags of ``classify``, ``localize`` and ``report`` (declared once: :func:`batch_command`)."""

    top_k: int | None = None  # --top-k
    threshold: float | None = None  # --threshold: score above which a label is predicted
    edge_model: Path | None = None  # --edge-model: structured-edge model file for EdgeBoxes
    audio_threshold: float | None = None  # --audio-threshold: audio score above which a class is heard
    visual_threshold: float | None = None  # --visual-threshold: visual score above which a class is seen

    def classify_options(self, *, any_format: bool = False) -> ClassifyOptions:
        from avscene.tasks.classify import ClassifyOptions

        return ClassifyOptions(top_k=self.top_k, threshold=self.threshold,
                               edge_model=None if self.edge_model is None else str(self.edge_model),
                               any_format=any_format, audio_threshold=self.audio_threshold,
                               visual_threshold=self.visual_threshold)


# each flag's parameter name -> its Annotated alias (cli/_options.py); defaults are the dataclasses'
_COMMON_FLAGS = {"model": ModelOpt, "revision": RevisionOpt, "device": DeviceOpt, "offline": OfflineOpt,
                 "json_out": JsonOpt, "jsonl": JsonlOpt, "resume": ResumeOpt, "retry_failed": RetryFailedOpt,
                 "force": ForceOpt, "jobs": JobsOpt, "timeout": TimeoutOpt, "shard": ShardOpt,
                 "any_format": AnyFormatOpt, "hub_timeout": HubTimeoutOpt,
                 "threads": ThreadsOpt}
_CLASSIFIER_FLAGS = {"top_k": TopKOpt, "threshold": ThresholdOpt, "audio_threshold": AudioThresholdOpt,
                     "visual_threshold": VisualThresholdOpt, "edge_model": EdgeModelOpt}


def _parameters(cls: type, flags: dict[str, Any]) -> list[inspect.Parameter]:
    defaults = {f.name: f.default for f in fields(cls)}
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name], annotation=alias)
            for name, alias in flags.items()]


def batch_command(*, classifier: bool = False) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Give a command the batch flags: ``fn(..., common: CommonArgs[, classifier: ClassifierArgs])``
    becomes a Typer command taking them as options (declared once, in this module)."""

    def decorate(fn: Callable[..., int]) -> Callable[..., int]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name not in ("common", "classifier")]
        groups = [("common", CommonArgs, _COMMON_FLAGS)]
        if classifier:
            groups.append(("classifier", ClassifierArgs, _CLASSIFIER_FLAGS))
        params = own + [p for _, cls, flags in groups for p in _parameters(cls, flags)]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> int:
            from avscene.threads import process_threads, thread_budget

            for name, cls, flags in groups:
                kwargs[name] = cls(**{flag: kwargs.pop(flag) for flag in flags})
            with thread_budget(process_threads(kwargs["common"].threads)):  # set before torch loads
                return fn(**kwargs)

        setattr(command, "__signature__", sig.replace(parameters=params))  # what Typer reads
        command.__annotations__ = {**{p.name: p.annotation for p in params}, "return": sig.return_annotation}
        return command

    return decorate


@dataclass
class Plan:
    """What one run will do."""

    files: list[Path]  # this shard's inputs, in order
    all_files: list[Path]  # the inputs of every shard (output clashes are checked over them)
    todo: list[Path]  # those without a record in the log: the ones processed now
    log: ResultLog | None  # the --jsonl file, None for stdout or none
    roots: tuple[str, ...] = ()  # the directory arguments ({relpath} is relative to them)

    def outputs(self, task: Any, templates: dict[str, str], common: CommonArgs, *,
                run_file: RunFile | None = None) -> WriteOptions:
        """Check the output templates over every input of the run (every shard's: a clash with
        another shard is refused too), and the file ``run_file`` written after the run, and return
        what the workers write with.

        ``--resume`` lets the inputs it processes replace their existing files: they have no
        record, so they are what an interrupted run (``kill -9``) left.

        Raises:
            UsageError: a bad template, or two outputs that would be one file;
            OutputError: ``run_file`` exists or cannot be written.
        """
        from avscene.tasks.outputs import WriteOptions, check_outputs

        once = {run_file.option: run_file.path} if run_file is not None else None
        check_outputs(templates, self.all_files, once=once, roots=self.roots)
        if run_file is not None:
            run_file.check(self.files)
        by_label = any("{label}" in t for t in templates.values())  # checked again once the classes are known
        return WriteOptions(task, templates, common.overwrite, roots=self.roots,
                            inputs=tuple(self.all_files) if by_label else ())


def check_flags(batch: BatchOptions) -> None:
    """Refuse flag combinations that cannot work (before any work)."""
    from avscene.errors import UsageError

    if batch.resume and batch.jsonl in (None, STDOUT):
        raise UsageError("--resume continues a --jsonl FILE: give the file, e.g. --jsonl results.jsonl --resume")
    if batch.retry_failed and not batch.resume:
        raise UsageError("--retry-failed only applies with --resume (and --jsonl FILE)")


def plan(paths: Sequence[Path], batch: BatchOptions) -> Plan:
    """Expand the inputs, keep this shard, open the log and drop what it already records.

    Raises:
        UsageError: bad flags or inputs; OutputError: the --jsonl file exists without --resume/--force.
    """
    from avscene.tasks.inputs import expand_inputs
    from avscene.tasks.runner import ResultLog, parse_shard, pending_inputs, shard_inputs

    check_flags(batch)
    shard = parse_shard(batch.shard) if batch.shard else None
    files = all_files = expand_inputs(paths)
    if shard is not None:
        files = shard_inputs(all_files, *shard)
    log = None
    if batch.jsonl not in (None, STDOUT):
        log = ResultLog(batch.jsonl, resume=batch.resume, force=batch.force)
    todo = pending_inputs(files, log, retry_failed=batch.retry_failed)
    if shard is not None and not files:
        _note(f"shard {batch.shard} has no inputs ({len(all_files)} in all)")
    if log is not None and log.repaired:
        _note(log.repaired)
    if len(todo) < len(files):
        _note(f"skipping {len(files) - len(todo)} input(s) already recorded in {batch.jsonl}")
    roots = tuple(str(p) for p in paths if Path(p).is_dir())
    return Plan(files=files, all_files=all_files, todo=todo, log=log, roots=roots)


def execute(p: Plan, job: Setup, sink: Sink, batch: BatchOptions, *, label: str,
            run_file: RunFile | None = None) -> int:
    """Run ``job`` over the plan's inputs into ``sink``, then write ``run_file`` from every input's
    result (with ``--resume``, the recorded ones too); returns the exit code.

    Ctrl-C / SIGTERM stop the run: workers are terminated, atomic writes leave
    no partial file, a line says how to resume, and the code is 130 / 143.
    """
    from contextlib import closing

    from avscene.cli._output import drain
    from avscene.tasks.runner import Interrupted, interrupts_raise, run_batch

    on_tb = _print_traceback if verbose() else None
    salvaged: list[Any] = []

    def salvage(r: Any) -> None:  # finished by a worker ahead of its turn: its files exist, record it
        if p.log is not None:
            p.log.append(r.to_json())
        salvaged.append(r)

    try:
        with interrupts_raise():
            results = run_batch(p.todo, job, jobs=batch.jobs, timeout=batch.timeout or None, on_traceback=on_tb,
                                on_salvage=salvage)
            with closing(results):
                drain(results, sink, total=len(p.todo), label=label)
            if run_file is not None and not _finished(p, sink, run_file):  # after a complete run; its
                return EXIT_INPUT_FAILED  # failure is not "nothing was processed" (2)
    except KeyboardInterrupt as e:
        interrupted = Interrupted.of(e)
        code, name = interrupted.exit_code, str(interrupted)
        done = len(p.files) - len(p.todo) + len(sink.results) + len(salvaged)
        hint = ("rerun the same command with --resume to continue" if p.log is not None else
                "to continue where a run stops, give it --jsonl FILE and rerun it with --resume")
        print(f"avscene: interrupted ({name}) after {done} of {len(p.files)} input(s); {hint}", file=sys.stderr)
        return code
    finally:
        if p.log is not None:
            p.log.close()
    return EXIT_INPUT_FAILED if sink.failed or _recorded_failures(p) else EXIT_OK


def _finished(p: Plan, sink: Sink, run_file: RunFile) -> bool:
    """Write ``run_file``; an AvsceneError (it cannot be written) is reported as one line."""
    from avscene.cli._errors import report
    from avscene.errors import AvsceneError

    try:
        run_file.write(p.files, sink.results, recorded(p))
    except AvsceneError as e:
        report(e)
        return False
    return True


def _recorded_failures(p: Plan) -> int:
    """Inputs of this run skipped because the log records them as failed (reported, exit 1)."""
    if p.log is None:
        return 0
    todo = {str(f) for f in p.todo}
    failed = [f for f in p.files if str(f) not in todo and "error" in p.log.records.get(str(f), {})]
    if failed:
        _note(f"{len(failed)} input(s) recorded as failed in {p.log.path} were skipped; "
              "add --retry-failed to try them again")
    return len(failed)


def recorded(p: Plan) -> dict[str, dict[str, Any]]:
    """The log's records of this plan's skipped inputs (file → record)."""
    if p.log is None:
        return {}
    todo = {str(f) for f in p.todo}
    return {str(f): p.log.records[str(f)] for f in p.files if str(f) not in todo}


def _note(msg: str) -> None:
    print(f"avscene: {msg}", file=sys.stderr)


def _print_traceback(file: str, text: str) -> None:
    from avscene.results import printable

    print(printable(f"avscene: traceback for {file}:\n{text.rstrip()}"), file=sys.stderr)
