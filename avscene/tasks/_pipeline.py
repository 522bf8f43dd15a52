"""The shared inference pipeline: decode → proposals → network, for one file.

``classify`` and ``localize`` both start from :func:`analyse`; they only differ
in what they read from its :class:`Analysis`.

Long files stream through in chunks of ``CHUNK_SECONDS``: each chunk is decoded
(:func:`avscene.io.decode.iter_chunks`), cut into proposals and embedded
(``AVSceneNet.forward_features``); only the proposal features, boxes and times are
kept, and the MIL heads score the whole file's bag once at the end
(``forward_head``). The result is the whole-file forward pass (to float rounding),
and memory stays bounded whatever the duration: one chunk of frames (60 s of 720p:
166 MB) plus 0.5 KB of features per proposal (an hour, 10 boxes a frame: 22 MB).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from avscene.errors import UsageError
from avscene.results import Label
from avscene.io._memory import release_free_memory

if TYPE_CHECKING:  # torch stays out of module import
    from avscene.checkpoint.load import LoadedModel
    from avscene.io.decode import ChunkReader, ClipChunk, MediaInfo
    from avscene.nn.model import ModelConfig, ModelOutput, ProposalFeatures
    from avscene.proposals.audio import AudioProposals, ProposalTimes
    from avscene.proposals.visual import VisualProposals

# Seconds decoded per chunk: at most a minute (per-chunk costs vanish), and fewer when the
# frames are large, so that one chunk's frames at source resolution stay within
# CHUNK_FRAME_BYTES: 60 s of 1280x720 at 1 fps is 166 MB, 1080p gets 32-s chunks, 4K 8-s ones.
CHUNK_SECONDS = 60.0
MIN_CHUNK_SECONDS = 4.0
CHUNK_FRAME_BYTES = 200 * 2**20
# Frames embedded per network call: their float input is 17 MB at 224x398 (720p resized).
EMBED_FRAMES = 16
@dataclass
class Analysis:
    """Everything one forward pass produced for one file (batch dimension removed).

    No audio, and no frames unless asked for (``keep_frames``): only what the outputs are read
    against (proposal times, boxes).
    """

    info: MediaInfo
    audio: ProposalTimes | None  # times (and NCP components) of the audio proposals
    visual: VisualProposals | None  # boxes (T, M, 4), EdgeBoxes scores, frame times
    output: ModelOutput
    timings: dict[str, float] = field(default_factory=dict)
    # the sampled frames [(t, (H, W, 3) uint8)], kept with keep_frames when the file was one chunk;
    # None: not kept (a long file: decode them again, streaming, with io.decode.iter_frames)
    frames: list[tuple[float, np.ndarray]] | None = None
    decode_warnings: tuple[str, ...] = ()  # what decoding found (info.warnings adds the missing modalities)

    @property
    def modalities(self) -> tuple[str, ...]:
        mods = []
        if self.output.audio_scores is not None:
            mods.append("audio")
        if self.output.visual_scores is not None:
            mods.append("visual")
        return tuple(mods)


class ChunkObserver(Protocol):
    """Sees what the analysis decodes, so that nothing else decodes the file again (the report's
    soundtrack and thumbnails, the separation of a given class)."""

    def opened(self, has_video: bool, has_audio: bool) -> None:
        """The file is open and has these streams (before anything is decoded)."""

    def add(self, chunk: ClipChunk) -> None:
        """One decoded chunk, in order (its frames are freed after the call: copy what is kept)."""


def chunk_seconds_for(info: MediaInfo, *, fps: float) -> float:
    """The chunk length for a file: ``CHUNK_SECONDS``, shorter if its frames are large."""
    if not (info.has_video and info.width and info.height):
        return CHUNK_SECONDS
    per_second = info.width * info.height * 3 * fps  # bytes of sampled RGB frames per second
    return float(min(CHUNK_SECONDS, max(MIN_CHUNK_SECONDS, CHUNK_FRAME_BYTES / per_second)))


@dataclass(frozen=True)
class AudioVariant:
    """One version of a file's audio to analyse (the noise-stress evaluation adds backgrounds)."""

    # (decoded audio of a chunk (n,), index of its first sample in the file) -> the (n,) samples
    # the proposals see instead; None: the audio as decoded
    edit: Callable[[np.ndarray, int], np.ndarray] | None = None
    video: bool = True  # False: the frames are left out, as for an audio-only input


def analyse(path: str | Path, loaded: LoadedModel, *, edge_model: str | None = None,
            chunk_seconds: float | None = None, any_format: bool = False, keep_frames: bool = False,
            observer: ChunkObserver | None = None) -> Analysis:
    """Decode one file, compute its proposals and run the network on them, chunk by chunk.

    Args:
        path: the media file.
        loaded: the model (:func:`avscene.tasks.models.load_model`).
        edge_model: optional structured-edge model file for EdgeBoxes.
        chunk_seconds: seconds decoded and embedded at a time (``math.inf``: all at once;
            None: :func:`chunk_seconds_for` the file). Only memory and speed depend on it,
            not the result (beyond float rounding; NCP bags are fitted per 23-s block on
            inputs over 34.56 s, whatever the chunk).
        any_format: also decode containers and codecs outside :mod:`avscene.io.formats`.
        keep_frames: keep the sampled frames in ``Analysis.frames`` when the file is decoded as
            one chunk (they are in memory then anyway); a longer file keeps none.
        observer: also hand every decoded chunk to it (:class:`ChunkObserver`).

    The file is opened once (a model with ``band_norm`` reads its audio once more first).

    Raises:
        DecodeError: the file cannot be decoded.
        UsageError: the file has none of the streams the model uses, or ``chunk_seconds`` <= 0.
    """
    return analyse_variants(path, loaded, (AudioVariant(),), edge_model=edge_model, chunk_seconds=chunk_seconds,
                            any_format=any_format, keep_frames=keep_frames, observer=observer)[0]


def analyse_variants(path: str | Path, loaded: LoadedModel, variants: Sequence[AudioVariant], *,
                     edge_model: str | None = None, chunk_seconds: float | None = None,
                     any_format: bool = False, keep_frames: bool = False,
                     observer: ChunkObserver | None = None) -> list[Analysis]:
    """:func:`analyse` of several versions of one file's audio, decoding the file and embedding its
    frames once (the frames' proposals and features are shared: only the audio differs).

    Returns:
        One :class:`Analysis` per variant, in order.
    """
    import torch

    from avscene.io.decode import iter_chunks

    cfg, pre = loaded.config, loaded.preprocess
    seconds = (lambda header: chunk_seconds_for(header, fps=pre.fps)) if chunk_seconds is None else chunk_seconds
    with iter_chunks(path, chunk_seconds=seconds, fps=pre.fps, offset=pre.frame_offset,
                     sample_rate=pre.sample_rate, any_format=any_format) as reader:
        if observer is not None:
            observer.opened(reader.has_video, reader.has_audio)
        if not ((cfg.uses_audio and reader.has_audio) or (cfg.uses_visual and reader.has_video)):
            raise UsageError(
                f"{path}: the model uses {'/'.join(_needed(cfg))} but the file has no such stream")
        audio = cfg.uses_audio and reader.has_audio
        offsets = _band_offsets(path, pre, variants, any_format=any_format) if audio and pre.band_norm else None
        emb = _Embedder(loaded, edge_model=edge_model, audio=audio,
                        visual=cfg.uses_visual and reader.has_video and any(v.video for v in variants),
                        variants=variants, band_offsets=offsets)
        # frames are kept only when the header says the file is one chunk (then they are in memory anyway)
        keep = keep_frames and reader.header.duration <= reader.chunk_seconds
        frames = _consume(reader, emb, observer, keep=keep)
    out = []
    for k, variant in enumerate(variants):
        feats, aprops, vprops = emb.result(k)
        if feats is None and emb.skipped_video is not None:
            raise UsageError(f"{path}: the model uses {'/'.join(_needed(cfg))}, and the video's "
                             f"{emb.skipped_video}; use a file whose video is at least that size")
        if feats is None:
            raise UsageError(f"{path}: the model uses {'/'.join(_needed(cfg))} but none of it could "
                             "be decoded")
        with emb.timer("network"), torch.inference_mode():
            res = loaded.model.forward_head(feats)
            res = type(res)(*[None if t is None else t[0].float().cpu() for t in res])
        info = reader.info
        warnings = [*info.warnings, *_missing(cfg, reader, aprops, vprops, emb.skipped_video)]
        if warnings != list(info.warnings) and variant.video:
            import dataclasses

            info = dataclasses.replace(info, warnings=tuple(warnings))
        out.append(Analysis(info=info, audio=aprops, visual=vprops, output=res, timings=emb.timings,
                            frames=frames if variant.video else None, decode_warnings=reader.info.warnings))
    return out


def _band_offsets(path: str | Path, pre, variants: Sequence[AudioVariant], *,
                  any_format: bool) -> list[np.ndarray | None]:
    """Each variant's ``band_norm`` offset: the band means of the whole file's TSPs
    (:func:`avscene.proposals.audio.band_offset`), from a first pass over its audio alone (it is
    streamed: memory does not grow with the duration). None for a variant with no audio decoded."""
    from avscene.io.audio_stream import AudioReader
    from avscene.proposals.audio import BandMeans, TSPStream

    streams = [TSPStream(cfg=pre) for _ in variants]
    means = [BandMeans() for _ in variants]
    start = 0
    with AudioReader(path, sample_rate=pre.sample_rate, any_format=any_format) as reader:
        for block in reader.blocks():
            for stream, acc, variant in zip(streams, means, variants):
                props = stream.push(block if variant.edit is None else variant.edit(block, start))
                acc.push(None if props is None else props.patches)
            start += len(block)
    for stream, acc in zip(streams, means):
        props = stream.finish()
        acc.push(None if props is None else props.patches)
    return [acc.value() for acc in means]


def _consume(reader: ChunkReader, emb: _Embedder, observer: ChunkObserver | None = None, *,
             keep: bool = False) -> list[tuple[float, np.ndarray]] | None:
    """Embed every chunk (and show it to ``observer``), letting go of each chunk's frames before the
    next is decoded; returns the sampled frames of a file decoded as one chunk with ``keep`` (None
    when it was not: a header that said less than the file holds)."""
    chunks = iter(reader)
    kept: list[tuple[float, np.ndarray]] | None = [] if keep else None
    n = 0
    while True:
        with emb.timer("decode"):
            chunk = next(chunks, None)
        if chunk is None:
            break
        n += 1
        emb.add(chunk)
        if observer is not None:
            observer.add(chunk)
        if kept is not None and chunk.frames is not None:
            kept.extend(zip(chunk.frame_times.tolist(), chunk.frames))
        if n > 1:
            kept = None  # more than one chunk after all: keep no frames
        del chunk  # otherwise two chunks of frames would be alive while the next one decodes
        # Each chunk frees a few hundred MB in 1-30 MB pieces from several threads: without a
        # trim the resident size crept up by ~30 MB a chunk (a 10-min 720p file).
        release_free_memory()
    emb.finish()
    return kept


def _missing(cfg: ModelConfig, reader: ChunkReader, aprops: ProposalTimes | None,
             vprops: VisualProposals | None, skipped_video: str | None) -> list[str]:
    """Warnings for a modality the model uses that the file does not give."""
    out = []
    for kind, used, has, got in (("audio", cfg.uses_audio, reader.has_audio, aprops),
                                 ("video", cfg.uses_visual, reader.has_video, vprops)):
        scores = "audio" if kind == "audio" else "visual"
        if used and kind == "video" and skipped_video is not None:
            out.append(f"video skipped: its {skipped_video}; visual scores are absent")
        elif used and not has:
            out.append(f"no {kind} stream: {scores} scores are absent")
        elif used and got is None:
            out.append(f"no {kind} could be decoded: {scores} scores are absent")
    return out


class _Embedder:
    """Proposals and proposal features of successive chunks; keeps no audio, and no frame unless
    ``keep_frames`` (those of the first chunk, dropped when a second one comes)."""

    def __init__(self, loaded: LoadedModel, *, edge_model: str | None, audio: bool, visual: bool,
                 variants: Sequence[AudioVariant], band_offsets: Sequence[np.ndarray | None] | None = None,
                 keep_frames: bool = False):
        from avscene.proposals.bags import AudioBagStream

        self._loaded, self._edge_model, self._visual = loaded, edge_model, visual
        self._variants = tuple(variants)
        # per variant, subtracted from its audio proposals (PreprocessConfig.band_norm); None: nothing
        self._offsets = list(band_offsets) if band_offsets is not None else [None] * len(self._variants)
        self._bags = [AudioBagStream(cfg=loaded.preprocess) for _ in variants] if audio else None
        self._device = next(loaded.model.parameters()).device
        self._audio_feats: list[list[ProposalFeatures]] = [[] for _ in variants]  # per variant
        self._visual_feats: list[ProposalFeatures] = []  # shared by the variants with video
        self._audio: list[list[ProposalTimes]] = [[] for _ in variants]  # times only: patches dropped once embedded
        self._boxes: list[VisualProposals] = []
        self.skipped_video: str | None = None  # why the video was left out: _too_small()
        self._keep_frames, self._chunks = keep_frames, 0
        self.frames: np.ndarray | None = None  # (T, H, W, 3) the frames of a one-chunk file (keep_frames)
        self.timings = dict.fromkeys(("decode", "audio_proposals", "visual_proposals", "network"), 0.0)

    @contextmanager
    def timer(self, key: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.timings[key] += time.perf_counter() - t0

    def add(self, chunk: ClipChunk) -> None:
        from avscene.proposals.visual import visual_proposals

        if self._bags is not None and chunk.audio is not None:
            for k, (bag, variant) in enumerate(zip(self._bags, self._variants)):
                audio = chunk.audio if variant.edit is None else variant.edit(chunk.audio, chunk.audio_start)
                with self.timer("audio_proposals"):
                    aprops = bag.push(audio)
                self._embed_audio(k, aprops)
        if self._visual and chunk.frames is not None:
            self.skipped_video = _too_small(chunk.frames)
            self._visual = self.skipped_video is None
        if self._visual and chunk.frames is not None:
            with self.timer("visual_proposals"):
                vprops = visual_proposals(chunk.frames, chunk.frame_times, cfg=self._loaded.preprocess,
                                          edge_model=self._edge_model)
            self._embed_visual(chunk.frames, vprops)
            self._chunks += 1
            self.frames = chunk.frames if self._keep_frames and self._chunks == 1 else None

    def finish(self) -> None:
        for k, bag in enumerate(self._bags or ()):
            with self.timer("audio_proposals"):
                aprops = bag.finish()
            self._embed_audio(k, aprops)

    def _embed_audio(self, k: int, aprops: AudioProposals | None) -> None:
        from avscene.proposals.audio import normalise_bands

        if aprops is not None:
            patches = normalise_bands(aprops.patches, self._offsets[k])
            self._audio_feats[k].append(self._features(patches=patches, patch_times=aprops.times))
            self._audio[k].append(aprops.timing)

    def _embed_visual(self, frames: np.ndarray, vprops: VisualProposals) -> None:
        """Features of the frames, ``EMBED_FRAMES`` at a time."""
        for i in range(0, len(vprops.times), EMBED_FRAMES):
            part = slice(i, i + EMBED_FRAMES)
            self._visual_feats.append(self._features(frames=frames[part], frame_times=vprops.times[part],
                                                     boxes=vprops.boxes[part]))
        self._boxes.append(vprops)

    def _features(self, *, patches: np.ndarray | None = None, patch_times: np.ndarray | None = None,
                  frames: np.ndarray | None = None, frame_times: np.ndarray | None = None,
                  boxes: np.ndarray | None = None) -> ProposalFeatures:
        import torch

        from avscene.nn.inputs import single_input

        with self.timer("network"), torch.inference_mode():
            x, _ = single_input(patches=patches, patch_times=patch_times, frames=frames,
                                frame_times=frame_times, boxes=boxes,
                                image_size=self._loaded.preprocess.image_size, device=self._device)
            return self._loaded.model.forward_features(x)

    def result(self, k: int = 0) -> tuple[ProposalFeatures | None, ProposalTimes | None, VisualProposals | None]:
        """Variant ``k``'s joined features, audio proposal times and visual proposals."""
        from avscene.nn.model import cat_features
        from avscene.proposals.audio import ProposalTimes
        from avscene.proposals.visual import VisualProposals

        video = self._variants[k].video
        parts = self._audio_feats[k] + (self._visual_feats if video else [])  # joined per modality
        feats = cat_features(parts) if parts else None
        aprops = vprops = None
        if self._audio[k]:
            comps = [a.component for a in self._audio[k]]
            aprops = ProposalTimes(np.concatenate([a.times for a in self._audio[k]]),  # (P, 2)
                                   None if comps[0] is None else np.concatenate(comps))
        if self._boxes and video:
            vprops = VisualProposals(*(np.concatenate([getattr(v, f) for v in self._boxes])
                                       for f in ("boxes", "scores", "times")))  # (T, M, 4), (T, M), (T,)
        return feats, aprops, vprops


def _too_small(frames: np.ndarray) -> str | None:
    """Why frames (T, H, W, 3) are too small for region proposals; None when they are not.

    The first chunk with frames decides: the decoder scales every later frame to the size
    of the first.
    """
    from avscene.proposals.visual import MIN_FRAME_SIDE

    _, height, width, _ = frames.shape  # (T, H, W, 3)
    if min(height, width) >= MIN_FRAME_SIDE:
        return None
    return (f"frames are {width}x{height} px, smaller than the {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} px "
            "that region proposals need")


def _needed(cfg) -> list[str]:
    return [m for m, used in (("audio", cfg.uses_audio), ("video", cfg.uses_visual)) if used]


def ranked_labels(scores: np.ndarray, labels: Iterable[str]) -> tuple[Label, ...]:
    """Every class with its score, highest first (ties broken by class order)."""
    labels = list(labels)
    order = np.argsort(-scores, kind="stable")
    return tuple(Label(labels[i], float(scores[i])) for i in order)


def check_finite(**thresholds: float | None) -> None:
    """Refuse a NaN or infinite threshold (every comparison with NaN is false: no prediction, silently).

    Raises:
        UsageError: naming the option (``event_threshold`` → ``--event-threshold``).
    """
    import math

    for name, value in thresholds.items():
        if value is not None and not math.isfinite(value):
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


def input_threshold(a: Analysis, loaded: LoadedModel, override: float | None = None) -> float:
    """The decision threshold of analysed input ``a``: ``override`` (``--threshold``) when given,
    else the model's for the streams the input has (``ModelConfig.input_threshold``: an input with
    one stream of a two-stream model is decided by that stream's heard / seen threshold)."""
    return loaded.config.input_threshold(a.modalities) if override is None else override


def predicted_labels(ranked: tuple[Label, ...], *, threshold: float, top_k: int | None) -> tuple[str, ...]:
    """Classes scoring above ``threshold``, at most ``top_k`` of them (best first)."""
    picked = [x.label for x in ranked if x.score > threshold]
    return tuple(picked if top_k is None else picked[:top_k])

