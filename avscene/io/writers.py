"""File writers: atomic files, streamed audio files, DCASE event TSVs, score TSVs.

Writers take typed results (:mod:`avscene.results`) and format them; they never
compute model numerics. Every file is written atomically (:func:`atomic_write`):
a reader sees either the previous file or the complete new one, and an
interrupted write leaves nothing behind.

Formats:

* **Event TSV** (:func:`write_events_tsv`), the DCASE task-4 form read by
  ``sed_eval``, ``psds_eval`` and ``sed_scores_eval.io.read_ground_truth_events``::

      filename<TAB>onset<TAB>offset<TAB>event_label<TAB>modality
      clip.mp4<TAB>1.200<TAB>3.360<TAB>dog<TAB>audio

  with a fifth column, ``modality``: ``audio`` (heard: the sound events),
  ``visual`` (seen) or ``audio-visual`` (both), the per-second parse of
  ``localize``; keep the ``audio`` rows for a sound event detection scorer.

* **Score TSV** (:func:`scores_tsv_text`; ``localize --scores-tsv`` writes one per input), as read by
  ``sed_scores_eval.io.read_sed_scores`` (a folder of them is what
  ``sed_scores_eval`` evaluates)::

      onset<TAB>offset<TAB><class 1><TAB><class 2>...

  one row per time step; the rows tile ``[0, duration]`` with each row's
  ``offset`` written identically to the next row's ``onset`` (the reader checks
  this with ``==``).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from avscene.errors import OutputError
from avscene.results import AudioSegment, FailedInput, LocalizeResult
from avscene.timing import segment_timestamps

EVENTS_HEADER = ("filename", "onset", "offset", "event_label", "modality")  # DCASE 2019+ task 4 + modality
EVENT_MODALITIES = ("audio", "visual", "audio-visual")  # heard, seen, both (Timing)
TIME_DECIMALS = 3  # ms resolution for every time written
SCORE_FORMAT = ".7g"  # float32 scores carry ~7 significant digits
# Score written for a class without an audio score (not reported, or no audio stream).
# sed_scores_eval reads "-inf" as float('-inf'), which lies below every decision
# threshold, so such a class is never detected; its own SEBB writer uses the same fill.
MISSING_SCORE = float("-inf")


# --------------------------------------------------------------------------- atomic files


@contextmanager
def atomic_write(path: str | Path, *, force: bool) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path, rename it into place on success.

    The temporary file lives in the destination's folder (so the final
    ``os.replace`` is atomic) under a hidden name that keeps the extension,
    ``.<stem>.tmp-<pid>-<random><suffix>``, so encoders that pick their format from
    the extension work. It exists (empty) when yielded. On any exception,
    ``KeyboardInterrupt`` included, it is removed and the destination is
    untouched. Missing parent folders are created.

    Args:
        path: the destination file.
        force: overwrite an existing destination; without it an existing
            file raises :class:`~avscene.errors.OutputError`.

    Yields:
        The temporary path to write to.

    Raises:
        OutputError: the destination exists (without ``force``) or is a folder,
            or its folder cannot be created or written.
    """
    dest = Path(path)
    _check_destination(dest, force=force)
    created: list[Path] = []  # the temporary, named before it exists: an interrupt at any point removes it
    try:
        tmp = _create_temp(dest, created)
        yield tmp
        if not force and dest.exists():  # appeared while we were writing
            raise OutputError(f"{dest} appeared while it was being written; pass --force to overwrite it")
        os.replace(tmp, dest)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, *, force: bool) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) atomically; returns the destination path.

    A file name's bytes that are not UTF-8 (lone surrogates in ``text``, see
    :func:`avscene.results.json_text`) are written as the bytes they stand for, so a TSV's
    ``filename`` column names the file exactly.
    """
    with atomic_write(path, force=force) as tmp:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            f.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes, *, force: bool) -> Path:
    """Write ``data`` atomically; returns the destination path."""
    with atomic_write(path, force=force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_writable(path: str | Path, *, force: bool) -> None:
    """Refuse, before any long work, an output file that exists (without ``force``), is a folder,
    or whose folder cannot be created or written to (a temporary file is created and removed).

    Raises:
        OutputError: as :func:`atomic_write` would, only later.
    """
    dest = Path(path)
    _check_destination(dest, force=force)
    _create_temp(dest).unlink()


def _check_destination(dest: Path, *, force: bool) -> None:
    if dest.is_dir():
        raise OutputError(f"{dest} is a folder: give a file name for the output")
    if dest.exists() and not force:
        raise OutputError(f"{dest} already exists; pass --force to overwrite it")
    folder = dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output folder {folder}: {e.strerror or e}; "
                          "choose another output location") from e


def _temp_pattern(dest: Path) -> re.Pattern[str]:
    """The names ``_create_temp`` gives temporaries of ``dest``; group 1 is the writer's PID."""
    return re.compile(rf"\.{re.escape(dest.stem)}\.tmp-(\d+)-[0-9a-f]{{8}}{re.escape(dest.suffix)}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def remove_stale_temps(dest: Path) -> list[Path]:
    """Remove the temporaries of ``dest`` left by writers that died (``kill -9``, power loss).

    Only files named exactly as ``_create_temp`` names them for this destination, owned by
    this user, whose writing process no longer exists: a live writer's file (another run on
    the same output) and anybody else's files are left alone. Returns what was removed.
    """
    pattern, removed = _temp_pattern(dest), []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or int(m.group(1)) == os.getpid() or _process_alive(int(m.group(1))):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass  # gone already, or not ours to remove
    return removed


def _create_temp(dest: Path, created: list[Path] | None = None) -> Path:
    """Create an empty hidden temp file beside ``dest`` (mode 0666 minus the umask), after
    removing the stale temporaries of earlier writers of ``dest`` that died. Its name is appended
    to ``created`` before the file is created, so a caller whose cleanup removes what ``created``
    names leaves nothing behind whenever an interrupt (a signal raised as an exception) lands."""
    folder = dest.parent
    remove_stale_temps(dest)
    created = [] if created is None else created
    for _ in range(100):
        tmp = folder / f".{dest.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{dest.suffix}"
        created.append(tmp)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            created.remove(tmp)  # another writer's: never ours to remove
            continue
        except OSError as e:
            raise OutputError(f"cannot write to the output folder {folder}: {e.strerror or e}; "
                              "check its permissions or choose another output location") from e
        os.close(fd)
        return tmp
    raise OutputError(f"cannot create a temporary file in {folder}; remove stale .*.tmp* files there")


# --------------------------------------------------------------------------- audio files

# suffix -> (soundfile format, subtype): .wav keeps float32 exactly (no clipping, so a
# source and residual written as .wav add up to the input); .flac is 24-bit, clipped to ±1.
AUDIO_FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}


class AudioFileWriter:
    """A mono audio file being written block by block (from :func:`atomic_audio_writer`)."""

    def __init__(self, file, path: Path, *, clip: bool) -> None:  # file: soundfile.SoundFile
        self._file, self._clip = file, clip
        self.path = path  # the destination (the data goes to a hidden temp file until the end)
        self.frames = 0  # samples written
        self.peak = 0.0  # largest |sample| seen, before any clipping

    def write(self, block: np.ndarray) -> None:
        """Append ``(n,)`` float samples (clipped to ±1 for integer formats)."""
        block = np.asarray(block, dtype=np.float32)
        self.peak = max(self.peak, float(np.abs(block).max(initial=0.0)))
        self._file.write(np.clip(block, -1.0, 1.0) if self._clip else block)
        self.frames += len(block)

    @property
    def clipped(self) -> bool:
        """Samples beyond ±1 were clipped (integer formats only)."""
        return self._clip and self.peak > 1.0


@contextmanager
def atomic_audio_writer(path: str | Path, *, sample_rate: int, force: bool) -> Iterator[AudioFileWriter]:
    """Write a mono audio file incrementally and atomically, in the format of its suffix.

    The samples go to a hidden temporary file in the destination folder
    (:func:`atomic_write`), which is renamed into place when the block exits
    without an error and removed otherwise: a reader never sees a partial file.

    Args:
        path: destination, ``.wav`` (32-bit float) or ``.flac`` (24-bit, clipped to ±1).
        sample_rate: Hz.
        force: overwrite an existing destination.

    Yields:
        An :class:`AudioFileWriter`; call its ``write`` with consecutive blocks.

    Raises:
        OutputError: an unknown suffix, or the destination exists (without ``force``) or
            cannot be written.
    """
    import soundfile as sf

    dest = Path(path)
    if dest.suffix.lower() not in AUDIO_FORMATS:
        raise OutputError(f"{dest}: write audio as .wav (32-bit float) or .flac (24-bit)")
    fmt, subtype = AUDIO_FORMATS[dest.suffix.lower()]
    with atomic_write(dest, force=force) as tmp:
        # bytes: soundfile encodes a str path strictly, and a file name need not be UTF-8
        with sf.SoundFile(os.fsencode(tmp), "w", samplerate=sample_rate, channels=1, format=fmt,
                          subtype=subtype) as f:
            yield AudioFileWriter(f, dest, clip=subtype.startswith("PCM"))


class SeparationFiles:
    """A sink for :func:`avscene.tasks.separate.separate_stream`: source (and residual) files.

    The files are named once the label and rate are known (``open``), written
    block by block, and put in place atomically when ``stack`` closes without
    an error (removed if it closes with one)::

        with ExitStack() as stack:
            files = SeparationFiles(stack, lambda label: (Path(f"{label}.wav"), None), force=False)
            result = separate_stream("clip.mp4", loaded, opts, files)
    """

    def __init__(self, stack: ExitStack, name: Callable[[str], tuple[Path, Path | None]], *,
                 force: bool) -> None:
        self._stack, self._name, self._force = stack, name, force
        self.source: AudioFileWriter | None = None  # set by open()
        self.residual: AudioFileWriter | None = None  # set by open() when a residual path is named

    def open(self, label: str, sample_rate: int) -> None:
        """Name the files for ``label`` (the ``name`` callback may refuse) and open them."""
        source_path, residual_path = self._name(label)
        self.source = self._stack.enter_context(
            atomic_audio_writer(source_path, sample_rate=sample_rate, force=self._force))
        if residual_path is not None:
            self.residual = self._stack.enter_context(
                atomic_audio_writer(residual_path, sample_rate=sample_rate, force=self._force))

    def write(self, source: np.ndarray, residual: np.ndarray) -> None:
        """Append the next samples of both signals."""
        self.source.write(source)
        if self.residual is not None:
            self.residual.write(residual)


# --------------------------------------------------------------------------- time grid


# --------------------------------------------------------------------------- TSV writers


def _fmt_time(t: float) -> str:
    return f"{t:.{TIME_DECIMALS}f}"


def _tsv_field(value: str, what: str) -> str:
    if any(c in value for c in "\t\n\r"):
        raise OutputError(f"cannot write {what} {value!r} to a TSV file: it contains a tab or "
                          "line break; rename it")
    return value


def check_events_tsv_names(files: Iterable[str | Path]) -> None:
    """Refuse, before any work, inputs whose file name an events TSV cannot hold.

    Raises:
        OutputError: a file name contains a tab or a line break.
    """
    for f in files:
        _tsv_field(Path(f).name, "file name")


def events_tsv_text(results: Iterable[LocalizeResult | FailedInput]) -> str:
    """The DCASE event table of ``results`` as text (see :func:`write_events_tsv`)."""
    lines = ["\t".join(EVENTS_HEADER)]
    for r in results:
        if not r.ok:
            continue
        name = _tsv_field(Path(r.file).name, "file name")
        rows = [(ev.onset, 0, ev.label, ev.offset) for ev in r.events]
        for lab, t in r.timing.items():
            rows += [(on, 1, lab, off) for on, off in t.seen] + [(on, 2, lab, off) for on, off in t.both]
        for onset, m, lab, offset in sorted(rows, key=lambda x: (x[0], x[1])):  # stable: events keep their order
            label = _tsv_field(lab, "label")
            lines.append(f"{name}\t{_fmt_time(onset)}\t{_fmt_time(offset)}\t{label}\t{EVENT_MODALITIES[m]}")
    return "\n".join(lines) + "\n"


def write_events_tsv(results: Iterable[LocalizeResult | FailedInput], path: str | Path, *,
                     force: bool) -> Path:
    """Write the detected events of several inputs as one DCASE task-4 TSV.

    Header ``filename  onset  offset  event_label  modality`` (tab-separated), then
    one row per event in the order of ``results``, and within a result by onset:
    its sound events (``audio``), the intervals each class is seen (``visual``)
    and heard and seen at once (``audio-visual``);
    ``filename`` is the input's base name, times in seconds with 3 decimals.
    Failed inputs and inputs without events add no row (the DCASE convention
    for predictions).

    Args:
        results: localize results; :class:`~avscene.results.FailedInput` items are skipped.
        path: the TSV file to write.
        force: overwrite an existing file.

    Returns:
        The path written.

    Raises:
        OutputError: the file exists without ``force``, cannot be written, or a
            file name or label contains a tab or line break.
    """
    return atomic_write_text(path, events_tsv_text(results), force=force)


def scores_tsv_text(result: LocalizeResult, *, class_names: Sequence[str]) -> str:
    """One input's audio scores as a ``sed_scores_eval`` score table (the text of its TSV file).

    Columns ``onset``, ``offset`` and one per name in ``class_names`` (in that order). Audio
    windows overlap (0.96 s, 0.48-s hop), but the format needs contiguous non-overlapping rows,
    so row ``i`` is the span window ``i`` stands for (:func:`avscene.timing.segment_timestamps`:
    its central 0.48 s; the first row starts at 0 and the last ends at the clip's duration) and
    holds the window's ``AudioSegment.score`` (the localisation-weighted score ``E``).

    A class in ``class_names`` without an entry in ``result.audio`` (not reported, or the input
    has no audio) gets ``-inf`` in every row, which ``sed_scores_eval`` reads as "never
    detected". An input without audio gives a single ``[0, duration]`` row of ``-inf``. Times
    have 3 decimals; a span that rounds to zero length is left out.

    Raises:
        OutputError: the class names are empty, duplicated or contain a tab, or the input is
            too short for one row.
    """
    names = [_tsv_field(c, "class name") for c in class_names]
    if not names:
        raise OutputError("no class names to write a score table for; pass at least one class")
    if len(set(names)) != len(names):
        raise OutputError(f"duplicate class names {names}: each score column needs a unique name")
    duration = float(result.classification.duration)
    ref = _reference_windows(result)
    ts = segment_timestamps([a.start for a in ref], [a.end for a in ref], duration)  # (P+1,)
    cols = [_class_column(result.audio.get(c), ref) for c in names]  # K × (P,)
    scores = np.stack(cols, axis=1) if ref else np.full((1, len(names)), MISSING_SCORE)  # (P, K)
    stamps = [_fmt_time(t) for t in ts]
    lines = ["\t".join(["onset", "offset", *names])]
    for i, row in enumerate(scores):
        if stamps[i] == stamps[i + 1]:
            continue  # empty span: the reader rejects zero-length rows
        vals = "\t".join(format(float(v), SCORE_FORMAT) for v in row)
        lines.append(f"{stamps[i]}\t{stamps[i + 1]}\t{vals}")
    if len(lines) == 1:
        raise OutputError(f"{result.file}: its duration {duration:.3f} s is too short for a score table")
    return "\n".join(lines) + "\n"


def _reference_windows(result: LocalizeResult) -> tuple[AudioSegment, ...]:
    """The audio windows of a result; every class must share the same ones."""
    tracks = [segs for segs in result.audio.values() if segs]
    if not tracks:
        return ()
    ref = tracks[0]
    for segs in tracks[1:]:
        if [(a.start, a.end) for a in segs] != [(a.start, a.end) for a in ref]:
            raise ValueError("audio scores of different classes use different windows")  # internal
    return ref


def _class_column(segs: tuple[AudioSegment, ...] | None, ref: tuple[AudioSegment, ...]) -> np.ndarray:
    if not segs:
        return np.full(len(ref), MISSING_SCORE)
    return np.array([a.score for a in segs], dtype=np.float64)  # (P,)
