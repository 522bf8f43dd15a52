"""``separate``: the sound of one class in a file, by a mask network, by dictionaries, by both, or by ranking NMF components.

The methods, what each needs from a checkpoint and which one ``"auto"`` picks are in
:mod:`avscene.separation.registry` (``SeparateOptions.method``); each separates a chunk
by its strategy in :mod:`avscene.separation.methods`, and
:class:`avscene.separation.streaming.StreamingSeparation` runs it over the file chunk by
chunk. This module is the file-level API: options, the label, the audio stream, the result.
The paper's method (``"ncp"``) is described here.

Parekh et al. (2019), Sec. III-D1. Per file: decode the audio (mono, at the
model's 16 kHz) → NMF with ``K`` components → component tracks → their
non-overlapping 0.96-s log-mel windows (NCPs) → the audio network's
classification scores ``β`` → relevance ``α_k = max_t β_{k,t}`` → min–max
scaled ``α'`` → soft weights (``α'``) or hard ones (``α' >= τ``) → Wiener-like
mask → source and residual (the maths is in :mod:`avscene.separation.ranking`, the
per-chunk numerics in :mod:`avscene.separation.methods`).

**Label.** Given (``SeparateOptions.label``), or, when it is None, predicted:
the classifier runs on the whole file (every stream the model and the file
have) and its top class is separated. ``SeparateResult.label_source`` says
which (``"given"`` / ``"predicted"``). A given label is checked against the
classifier (a warning when it is not predicted) in the same decoding pass that
separates it: the analysis (:func:`avscene.tasks._pipeline.analyse`) hands each
decoded chunk's audio to the separation (at the model's rate; ``output_rate
"input"`` needs the file's own rate, so the audio is read a second time). A
predicted label needs the whole file classified first, so the separation then
streams the audio again: the second, audio-only decode costs little (0.04 s for
a 10-s AAC clip whose separation takes ~2.6 s) and keeps the separation's memory
independent of the length. :func:`separate_samples` separates audio already
decoded (the report's soundtrack).

**Long inputs: NMF per chunk.** Nothing is cut off, and an input of any length
is separated in bounded memory. The audio is streamed from the file
(:class:`avscene.io.audio_stream.AudioReader`) and cut into chunks of at most
``chunk_seconds`` (30 s) overlapping by ``crossfade_seconds`` (1 s)
(:func:`avscene.dsp.overlap.ready_chunks`: full chunks from the start, the
remainder split into two nearly equal ones, so no chunk is shorter than half
a chunk). NMF is fitted to each chunk on its own (``K`` components, same
seed): each stretch of audio gets its own ``K`` spectral templates, which is
also what a recording whose sources change over an hour needs. Each chunk's
components are scored and ranked among themselves (``α`` and the min–max
``α'`` per chunk), and the report keeps them per chunk: ``SeparateResult.alpha``
has one row of ``K`` values per entry of ``chunks``. The chunk outputs are
joined by overlap-add with complementary raised-cosine fades (``sin²`` in,
``cos²`` out) across each overlap. The fades sum to one and each chunk's
source + residual is that chunk, so the joined source + residual is the
mixture (to float rounding) at any length, and the output has exactly the
input's length. Time grows linearly with the length; memory does not: one
chunk's decomposition (30 s, K = 20: a peak of ~0.4-0.5 GB above the loaded
model) and two chunks of input exist at a time, and the output goes to a sink
block by block (:class:`avscene.io.writers.SeparationFiles` writes files as it
goes). Measured on 2 busy CPU cores with the bundled model: 10 min of audio in
79 s, 1 h in 558 s (125 chunks), peak RSS 1.05 and 1.15 GB (0.65 GB of it is
torch and the model).
A clip up to ``chunk_seconds`` is one chunk.

**Output rate.** ``"model"``: 16-kHz signals. ``"input"``: the audio is decoded
at the file's own rate, a 16-kHz copy (``scipy.signal.resample_poly``:
polyphase, Kaiser-windowed FIR; streamed exactly by
:class:`avscene.dsp.overlap.StreamResampler`) is separated, the source is
resampled back the same way and the residual is ``input - source``, so source
+ residual is still the input, and what lies above 8 kHz (which the model
cannot hear) goes to the residual. Multi-channel audio is averaged to mono in
both cases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from avscene.dsp.nmf import DIVERGENCES
from avscene.errors import UsageError
from avscene.proposals.nmf import NMFOptions
from avscene.results import SeparateResult
from avscene.separation.ranking import Enhancement, check_threshold
from avscene.separation.registry import Method, MethodName, StrategyInputs, parse_method, resolve_method
from avscene.tasks._pipeline import Analysis, analyse, input_threshold, ranked_labels
from avscene.tasks.models import model_ref

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel
    from avscene.io.audio_stream import AudioReader
    from avscene.separation.streaming import SeparationSink, StreamingSeparation

__all__ = ["CHUNK_SECONDS", "CROSSFADE_SECONDS", "SeparateOptions", "Separation", "check_options", "method_for",
           "separate_audio", "separate_file", "separate_samples", "separate_stream"]

CHUNK_SECONDS = 30.0  # longest stretch one NMF models; 30 s x K=20 peaks at ~0.4-0.5 GB
CROSSFADE_SECONDS = 1.0  # overlap of consecutive chunks, cross-faded
MIN_CHUNK_SECONDS = 2.0  # at least two 0.96-s NCP windows per chunk, so ranking has a time axis
OUTPUT_RATES = ("model", "input")


@dataclass(frozen=True)
class SeparateOptions:
    """What to separate and how (see the module docstring)."""

    # Class to separate; None: the classifier's top class on this file ("label unknown").
    label: str | None = None
    # None: soft mask (weights α'); τ in [0, 1]: keep the components with α' >= τ (paper: 0.1).
    threshold: float | None = None
    nmf: NMFOptions = NMFOptions()  # decomposition of each chunk: K, divergence, iterations, seed, STFT
    # "model": 16-kHz output; "input": the file's own sample rate (resample_poly back).
    output_rate: Literal["model", "input"] = "model"
    chunk_seconds: float = CHUNK_SECONDS  # longest chunk fitted by one NMF (see "Long inputs")
    crossfade_seconds: float = CROSSFADE_SECONDS  # overlap of consecutive chunks; <= chunk_seconds / 4
    # a method of avscene.separation.registry.METHODS, or "auto": the checkpoint's measured best,
    # else the first it carries (hybrid > mask > dictionary > ncp), ncp whenever a threshold is given
    method: MethodName = MethodName.AUTO
    any_format: bool = False  # also decode containers/codecs outside avscene.io.formats (--any-format)
    check_label: bool = True  # a given label: classify the file and warn when the label is not predicted


def method_for(opts: SeparateOptions, loaded: LoadedModel) -> Method:
    """The method ``opts`` asks for with this model (:func:`avscene.separation.registry.resolve_method`).

    Raises:
        UsageError: an unknown method, a method whose parts the model lacks, or a
            threshold with a method that ranks nothing.
    """
    return resolve_method(opts.method, loaded.separation, threshold=opts.threshold, model_id=loaded.model_id)


@dataclass(frozen=True)
class Separation:
    """What :func:`separate_file` returns: the result record and the two signals.

    Tasks write no files: ``result.source_path`` / ``residual_path`` are None
    until a writer (the CLI) fills them in.
    """

    result: SeparateResult
    source: np.ndarray  # (N,) float32 at result.sample_rate: the sound of result.label
    residual: np.ndarray  # (N,) float32: everything else; source + residual = the input audio

    ok = True

    @property
    def file(self) -> str:
        return self.result.file

    def to_json(self) -> dict:
        return self.result.to_json()


# --------------------------------------------------------------------------- options


def check_options(opts: SeparateOptions, loaded: LoadedModel) -> tuple[Method, int | None]:
    """Validate ``opts`` against the model; returns the method to run and the given label's class
    index (or None).

    Raises:
        UsageError: an unknown label (the message lists the known ones), a model
            without an audio network, or an option out of range.
    """
    if not loaded.config.uses_audio:
        raise UsageError(f"the model {loaded.model_id} ({loaded.config.variant}) has no audio network; "
                         "separation needs an audio or audio-visual model")
    check_threshold(opts.threshold, option="--threshold")
    if opts.output_rate not in OUTPUT_RATES:
        raise UsageError(f"unknown output rate {opts.output_rate!r}: use one of {list(OUTPUT_RATES)}")
    if opts.nmf.divergence not in DIVERGENCES:
        raise UsageError(f"unknown NMF divergence {opts.nmf.divergence!r}: use one of {list(DIVERGENCES)}")
    if opts.nmf.k < 1:
        raise UsageError(f"--components must be >= 1, got {opts.nmf.k}")
    if not opts.chunk_seconds >= MIN_CHUNK_SECONDS:
        raise UsageError(f"chunk_seconds must be >= {MIN_CHUNK_SECONDS}, got {opts.chunk_seconds}; "
                         f"the default is {CHUNK_SECONDS}")
    if not 0.0 <= opts.crossfade_seconds <= opts.chunk_seconds / 4:
        raise UsageError(f"crossfade_seconds must be in [0, chunk_seconds / 4] = [0, {opts.chunk_seconds / 4}], "
                         f"got {opts.crossfade_seconds}")
    parse_method(opts.method)
    method = method_for(opts, loaded)
    if opts.label is None:
        return method, None
    if opts.label not in loaded.labels:
        raise UsageError(f"unknown label {opts.label!r}; the model knows: {', '.join(loaded.labels)}")
    return method, loaded.labels.index(opts.label)


def _streaming(loaded: LoadedModel, method: Method, class_index: int, opts: SeparateOptions) -> StreamingSeparation:
    """``method`` run in the chunks of ``opts``, chunk sizes in samples at the model's rate."""
    from avscene.separation.streaming import streaming_separation

    sr = loaded.preprocess.sample_rate
    inputs = StrategyInputs(loaded, loaded.separation, class_index, opts.nmf, opts.threshold)
    return streaming_separation(method, inputs, size=round(opts.chunk_seconds * sr),
                                overlap=round(opts.crossfade_seconds * sr))


# --------------------------------------------------------------------------- arrays


def separate_audio(audio: np.ndarray, loaded: LoadedModel, class_index: int, opts: SeparateOptions,
                   ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], list[Enhancement]]:
    """Separate class ``class_index`` from mono audio at the model's rate, chunk by chunk.

    Args:
        audio: ``(N,)`` float mixture at ``loaded.preprocess.sample_rate``.
        loaded: the model.
        class_index: target class.
        opts: threshold, NMF and chunking options (label and output rate are not used).

    Returns:
        ``(source, residual, bounds, rankings)``: two ``(N,)`` float32 signals
        summing to ``audio``, the chunks' ``[start, end)`` samples and each
        chunk's ranking (:class:`~avscene.separation.ranking.Enhancement` without signals).
    """
    from avscene.separation.streaming import separate_array

    sep = _streaming(loaded, method_for(opts, loaded), class_index, opts)
    out = separate_array(sep, audio)  # (2, N)
    return out[0], out[1], sep.bounds, sep.rankings


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class _ChosenLabel:
    name: str
    index: int
    source: str  # "given" | "predicted"
    score: float | None  # the classifier's score of a predicted label
    warnings: tuple[str, ...]


def _choose_label(path: str | Path, loaded: LoadedModel, given: int | None, *,
                  any_format: bool = False, check: bool = True) -> _ChosenLabel:
    """The given label (with a warning when the classifier does not predict it), or the classifier's
    top class on the whole file."""
    if given is not None and not check:
        return _ChosenLabel(loaded.labels[given], given, "given", None, ())
    return _label_of(analyse(path, loaded, any_format=any_format), loaded, given)


def _label_of(a: Analysis, loaded: LoadedModel, given: int | None) -> _ChosenLabel:
    """The given label checked against the file's analysis ``a``, or its top class."""
    limit = input_threshold(a, loaded)
    if given is not None:
        score = float(a.output.scores.numpy()[given])
        name = loaded.labels[given]
        warn = () if score > limit else (
            f"{name!r} is not predicted in this file (score {score:.3f} <= threshold {limit:g}): the separated "
            f"track is what sounds most like {name!r}, which may be another sound",)
        return _ChosenLabel(name, given, "given", None, warn)
    top = ranked_labels(a.output.scores.numpy(), loaded.labels)[0]
    warnings = list(a.info.warnings)
    if not top.score > limit:
        warnings.append(f"no class is detected (best score {top.score:.3f} <= threshold {limit:g}); "
                        f"separating the best guess {top.label!r}; pass --label to choose the class")
    return _ChosenLabel(top.label, loaded.labels.index(top.label), "predicted", top.score, tuple(warnings))


def _flat_warnings(bounds: list[tuple[int, int]], ranks: list[Enhancement], sr: int) -> list[str]:
    """Stretches whose components all scored the same: ranking is impossible, the source is the mixture."""
    flat = [(a, b) for (a, b), e in zip(bounds, ranks) if bool((e.alpha == e.alpha[0]).all())]
    runs: list[list[int]] = []  # consecutive flat chunks merged: [start, end] samples
    for a, b in flat:
        if runs and a <= runs[-1][1]:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    return [f"{a / sr:.1f}-{b / sr:.1f} s: every NMF component scored the same for this class, so the "
            "source there is the unchanged mixture" for a, b in runs]


def _no_audio(path: str | Path) -> UsageError:
    return UsageError(f"{path}: the file has no audio stream, so there is nothing to separate (a silent video?)")


def _open_audio(path: str | Path, loaded: LoadedModel, opts: SeparateOptions) -> tuple[AudioReader, int]:
    """The audio stream to separate and its output rate (the model's, or the file's own)."""
    from avscene.io.audio_stream import AudioReader
    from avscene.io.decode import header

    info = header(path, any_format=opts.any_format)  # nothing decoded
    if not info.has_audio:
        raise _no_audio(path)
    sr = loaded.preprocess.sample_rate
    rate = info.audio_rate if opts.output_rate == "input" and info.audio_rate else sr
    return AudioReader(path, sample_rate=rate, any_format=opts.any_format), rate


def separate_stream(path: str | Path, loaded: LoadedModel, opts: SeparateOptions | None,
                    sink: SeparationSink) -> SeparateResult:
    """Separate the sound of one class from one file into ``sink``, in bounded memory.

    The audio is decoded, separated chunk by chunk and handed to ``sink`` as it
    goes (see "Long inputs" in the module docstring); nothing of the whole
    signal is held.

    Args:
        path: any media file with an audio stream.
        loaded: a model with an audio network (:func:`avscene.tasks.models.load_model`).
        opts: label, threshold, NMF, output rate and chunking (defaults: label
            predicted, soft mask, K = 20 KL-NMF, 16-kHz output, 30-s chunks).
        sink: receives ``open(label, rate)`` once, then every block of source and residual.

    Returns:
        The :class:`~avscene.results.SeparateResult` (``source_path`` / ``residual_path`` unset).

    Raises:
        UsageError: an unknown label or bad option, or a file without audio.
        DecodeError: the file cannot be decoded.
    """
    from avscene.separation.streaming import pump_input_rate, pump_model_rate

    opts = opts or SeparateOptions()
    method, given = check_options(opts, loaded)  # the method is resolved once, here
    if given is not None and opts.check_label and opts.output_rate == "model":
        return _separate_while_classifying(path, loaded, opts, method, given, sink)
    reader, rate = _open_audio(path, loaded, opts)
    with reader:
        chosen = _choose_label(path, loaded, given, any_format=opts.any_format, check=opts.check_label)
        sink.open(chosen.name, rate)
        sep = _streaming(loaded, method, chosen.index, opts)
        sr = loaded.preprocess.sample_rate
        if rate == sr:
            n = pump_model_rate(reader.blocks(), sep, sink)
        else:
            n = pump_input_rate(reader.blocks(), sep, rate, sr, sink)
        read_warnings = reader.warnings
    return _result(path, loaded, opts, chosen, sep, n, rate, read_warnings)


class _SeparatingObserver:
    """Separates the audio of each chunk the classifier's analysis decodes (one pass over the file)."""

    def __init__(self, path: str | Path, label: str, sep: StreamingSeparation, sink: SeparationSink, rate: int):
        from avscene.separation.streaming import ModelRateFeed

        self.path, self.label, self.rate, self.sink = path, label, rate, sink
        self.feed = ModelRateFeed(sep, sink)

    def opened(self, has_video: bool, has_audio: bool) -> None:
        if not has_audio:
            raise _no_audio(self.path)
        self.sink.open(self.label, self.rate)

    def add(self, chunk) -> None:
        if chunk.audio is not None:
            self.feed.push(chunk.audio)


def _separate_while_classifying(path: str | Path, loaded: LoadedModel, opts: SeparateOptions, method: Method,
                                given: int, sink: SeparationSink) -> SeparateResult:
    """A given label: classify the file (to warn when the label is not predicted) and separate it in
    the same decoding pass, at the model's rate."""
    sep = _streaming(loaded, method, given, opts)
    rate = loaded.preprocess.sample_rate
    observer = _SeparatingObserver(path, loaded.labels[given], sep, sink, rate)
    a = analyse(path, loaded, any_format=opts.any_format, observer=observer)
    n = observer.feed.finish()
    audio_only = [w for w in a.decode_warnings if not w.startswith("video:")]  # the video is no concern of separate
    return _result(path, loaded, opts, _label_of(a, loaded, given), sep, n, rate, audio_only)


def separate_samples(path: str | Path, audio: np.ndarray, loaded: LoadedModel, label: str,
                     opts: SeparateOptions | None = None) -> Separation:
    """Separate ``label`` from ``path``'s audio already decoded: ``audio`` (N,) float32 mono at the
    model's rate (the report's soundtrack); nothing is decoded again.

    Raises:
        UsageError: an unknown label or bad option.
    """
    from avscene.separation.streaming import pump_model_rate

    opts = opts or SeparateOptions()
    method, given = check_options(dataclasses.replace(opts, label=label), loaded)
    assert given is not None
    sink = _ArraySink()
    sep = _streaming(loaded, method, given, opts)
    rate = loaded.preprocess.sample_rate
    n = pump_model_rate(iter([np.asarray(audio, dtype=np.float32)]), sep, sink)
    chosen = _ChosenLabel(label, given, "given", None, ())
    return sink.separation(_result(path, loaded, opts, chosen, sep, n, rate, ()))


def _result(path: str | Path, loaded: LoadedModel, opts: SeparateOptions, chosen: _ChosenLabel,
            sep: StreamingSeparation, n: int, rate: int, read_warnings: Sequence[str]) -> SeparateResult:
    """The record of one separation: ``n`` samples at ``rate`` written by ``sep``."""
    sr = loaded.preprocess.sample_rate
    rows = lambda t: tuple(tuple(v.tolist()) for v in t)  # noqa: E731 - (n_chunks, K) nested tuples
    ranks = sep.rankings
    return SeparateResult(
        file=str(path), label=chosen.name, label_source=chosen.source, label_score=chosen.score,
        method=sep.method, k=sep.components, threshold=opts.threshold if sep.method == "ncp" else None,
        chunks=tuple((a / sr, b / sr) for a, b in sep.bounds),
        alpha=rows([e.alpha for e in ranks]), alpha_scaled=rows([e.alpha_scaled for e in ranks]),
        kept=rows([e.kept for e in ranks]),
        sample_rate=rate, duration=n / rate, model=model_ref(loaded),
        warnings=tuple(dict.fromkeys([*read_warnings, *chosen.warnings, *_flat_warnings(sep.bounds, ranks, sr)])),
    )


class _ArraySink:
    """Collects the separated signals in memory (for :func:`separate_file`)."""

    def __init__(self) -> None:
        self.source: list[np.ndarray] = []
        self.residual: list[np.ndarray] = []

    def open(self, label: str, sample_rate: int) -> None:
        pass

    def write(self, source: np.ndarray, residual: np.ndarray) -> None:
        self.source.append(np.asarray(source, dtype=np.float32))
        self.residual.append(np.asarray(residual, dtype=np.float32))

    def separation(self, result: SeparateResult) -> Separation:
        """The collected signals with their record."""
        source = np.concatenate(self.source) if self.source else np.zeros(0, dtype=np.float32)
        self.source.clear()  # free the blocks before the second copy
        residual = np.concatenate(self.residual) if self.residual else np.zeros(0, dtype=np.float32)
        return Separation(result=result, source=source, residual=residual)


def separate_file(path: str | Path, loaded: LoadedModel, opts: SeparateOptions | None = None) -> Separation:
    """Separate the sound of one class from one file (video or audio-only), in memory.

    The signals are returned as arrays (two float32 copies of the input's
    length); for long files prefer :func:`separate_stream` with a file sink.

    Args:
        path: any media file with an audio stream.
        loaded: a model with an audio network (:func:`avscene.tasks.models.load_model`).
        opts: label, threshold, NMF, output rate and chunking (defaults: label
            predicted, soft mask, K = 20 KL-NMF, 16-kHz output).

    Returns:
        :class:`Separation`: the :class:`~avscene.results.SeparateResult` and the
        source and residual signals (no file is written).

    Raises:
        UsageError: an unknown label or bad option, or a file without audio.
        DecodeError: the file cannot be decoded.
    """
    sink = _ArraySink()
    return sink.separation(separate_stream(path, loaded, opts, sink))
