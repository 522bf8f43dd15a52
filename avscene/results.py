"""Typed results of avscene's tasks: the output contract, in one place.

Every result is a frozen dataclass with ``to_json()`` returning plain JSON types.
The JSON schema of each is documented on the class; other tools parse it, so
fields are only ever added, never renamed or removed.

Score semantics (``Label.score``): the fused video-level class score of the
model. For the hinge-trained variants (``async``, ``sync``, ``audio``, ``visual``,
``onestream``) it is the sum of the ℓ2-normalised per-modality score vectors,
times ``sqrt(C)`` for C classes (``ModelConfig.fused_scale``), so it lies in
``[-2√C, 2√C]`` with both modalities and ``[-√C, √C]`` with one; the model was
trained with a margin-1 hinge loss so that a present class scores above 0 (and
ideally above 1), an absent one below 0. For ``wsddn`` it is a
probability in ``[0, 1]``. A class is *predicted* when its score exceeds the
decision threshold (0 for hinge variants, 0.5 for ``wsddn``, or the user's
``--threshold``); ``--top-k`` then keeps at most the k best of those.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")  # what Python makes of a file name's bytes that are not UTF-8


def json_text(doc: Any, *, indent: int | None = None) -> str:
    """``doc`` as standard JSON text (RFC 8259): every JSON file and line avscene writes goes here.

    Python's ``json`` writes a NaN or an infinity as the bare words ``NaN`` / ``Infinity``,
    which other JSON parsers refuse; here a non-finite float (an undefined metric) becomes
    ``null``, and ``allow_nan=False`` guarantees that nothing else slips through.

    A file name that is not UTF-8 (legal on Linux) reaches Python with each undecodable byte
    as a lone surrogate (``surrogateescape``: byte ``0xff`` is ``"\\udcff"``); such a
    character is written as its JSON escape ``\\udcff``, so the text stays valid UTF-8 and
    ``os.fsencode(json.loads(text)["file"])`` gives the name's bytes back exactly.
    """
    text = json.dumps(_finite(doc), indent=indent, ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def printable(text: str) -> str:
    """``text`` as a person reads it: a file name's bytes that are not UTF-8 shown as ``\\xff``.

    For tables, messages and pages (never for JSON, which keeps them losslessly: :func:`json_text`).
    """
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _finite(x: Any) -> Any:
    """``x`` with every non-finite float replaced by None (dicts, lists and tuples recursed)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _r(x: float, nd: int = 4) -> float:
    """Round floats for stable, readable JSON."""
    return round(float(x), nd)


def _f(x: Any) -> float:
    """A JSON number read back as a float; ``null`` (a non-finite value, see :func:`json_text`) as NaN."""
    return math.nan if x is None else float(x)


def _spans(items: Any) -> tuple[tuple[float, float], ...]:
    return tuple((_f(a), _f(b)) for a, b in items)


@dataclass(frozen=True)
class ModelRef:
    """Which checkpoint produced a result. JSON: ``{"id": str, "revision": str|null}``."""

    id: str
    revision: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "revision": self.revision}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelRef:
        return cls(d["id"], d.get("revision"))


@dataclass(frozen=True)
class Label:
    """One class score. JSON: ``{"label": str, "score": float}``."""

    label: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "score": _r(self.score)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Label:
        return cls(d["label"], _f(d["score"]))


@dataclass(frozen=True)
class FailedInput:
    """An input that could not be processed. JSON: ``{"file": str, "error": str}``."""

    file: str
    error: str

    ok = False

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "error": self.error}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FailedInput:
        return cls(d["file"], d["error"])


@dataclass(frozen=True)
class ClassParse:
    """Video-level decisions of one class: fused, and per modality (heard, seen).

    JSON::

        {"label": str, "score": float, "predicted": bool,
         "audio": {"score": float, "heard": bool} | null,    # null: no audio score
         "visual": {"score": float, "seen": bool} | null}

    ``score`` / ``predicted`` are the fused score and decision (as in ``labels`` /
    ``predicted``). A modality's ``score`` is its own video-level score on the fused
    score's scale (hinge variants: its ℓ2-normalised score times ``√C``, the share it
    adds to the fused score; ``wsddn``: its probability); ``heard`` / ``seen`` is that
    score above the modality's threshold (``modality_thresholds``).
    """

    label: str
    score: float
    predicted: bool
    audio_score: float | None = None
    heard: bool = False
    visual_score: float | None = None
    seen: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": _r(self.score),
            "predicted": self.predicted,
            "audio": None if self.audio_score is None else {"score": _r(self.audio_score), "heard": self.heard},
            "visual": None if self.visual_score is None else {"score": _r(self.visual_score), "seen": self.seen},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClassParse:
        a, v = d.get("audio"), d.get("visual")
        return cls(d["label"], _f(d["score"]), bool(d["predicted"]),
                   audio_score=None if a is None else _f(a["score"]), heard=bool(a and a["heard"]),
                   visual_score=None if v is None else _f(v["score"]), seen=bool(v and v["seen"]))


@dataclass(frozen=True)
class ClassifyResult:
    """Video-level labels of one input.

    JSON::

        {"file": str, "duration": float, "modalities": ["audio", "visual"],
         "labels": [{"label": str, "score": float}, ...],   # every class, best first
         "predicted": [str, ...],                           # score > threshold, top-k
         "threshold": float,
         "parse": [ClassParse, ...],                        # every class, in the model's class order
         "modality_thresholds": {"audio": float, "visual": float},
         "model": {"id": str, "revision": str|null},
         "warnings": [str, ...]}

    ``modalities`` lists the modalities the scores were computed from: a file
    without an audio stream gives ``["visual"]`` (no audio score is faked).
    ``parse`` holds, for every class, the fused decision and the per-modality
    ones (:class:`ClassParse`): is it heard, is it seen.
    """

    file: str
    duration: float
    modalities: tuple[str, ...]
    labels: tuple[Label, ...]
    predicted: tuple[str, ...]
    threshold: float
    model: ModelRef
    warnings: tuple[str, ...] = ()
    parse: tuple[ClassParse, ...] = ()
    modality_thresholds: dict[str, float] = field(default_factory=dict)

    ok = True

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "duration": _r(self.duration, 3),
            "modalities": list(self.modalities),
            "labels": [x.to_json() for x in self.labels],
            "predicted": list(self.predicted),
            "threshold": self.threshold,
            "parse": [x.to_json() for x in self.parse],
            "modality_thresholds": dict(self.modality_thresholds),
            "model": self.model.to_json(),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClassifyResult:
        """Inverse of :meth:`to_json` (extra keys, e.g. a ``localize`` record's, are ignored)."""
        return cls(file=d["file"], duration=_f(d["duration"]), modalities=tuple(d["modalities"]),
                   labels=tuple(Label.from_json(x) for x in d["labels"]), predicted=tuple(d["predicted"]),
                   threshold=_f(d["threshold"]), model=ModelRef.from_json(d["model"]),
                   warnings=tuple(d.get("warnings", ())), parse=tuple(ClassParse.from_json(x) for x in d.get("parse", ())),
                   modality_thresholds={k: _f(v) for k, v in d.get("modality_thresholds", {}).items()})


@dataclass(frozen=True)
class BoxDetection:
    """Best box of a class in one sampled frame. JSON: ``{"t", "box": [x0,y0,x1,y1], "score"}``."""

    t: float
    box: tuple[float, float, float, float]
    score: float
    rank: int = 0

    def to_json(self) -> dict[str, Any]:
        d = {"t": _r(self.t, 3), "box": [_r(v, 1) for v in self.box], "score": _r(self.score, 6)}
        if self.rank:
            d["rank"] = self.rank
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BoxDetection:
        return cls(_f(d["t"]), tuple(_f(v) for v in d["box"]), _f(d["score"]), rank=int(d.get("rank", 0)))


@dataclass(frozen=True)
class AudioSegment:
    """A class's score on one audio proposal window. JSON: ``{"start","end","score","heat"}``.

    ``score`` is the localisation-weighted proposal score ``E``; ``heat`` is the
    same scaled to ``[0, 1]`` over the clip (min–max, per class).
    """

    start: float
    end: float
    score: float
    heat: float

    def to_json(self) -> dict[str, Any]:
        return {
            "start": _r(self.start, 3),
            "end": _r(self.end, 3),
            "score": _r(self.score, 6),
            "heat": _r(self.heat),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AudioSegment:
        return cls(_f(d["start"]), _f(d["end"]), _f(d["score"]), _f(d["heat"]))


@dataclass(frozen=True)
class Event:
    """A detected sound event. JSON: ``{"label": str, "onset": float, "offset": float}``."""

    label: str
    onset: float
    offset: float

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "onset": _r(self.onset, 3), "offset": _r(self.offset, 3)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Event:
        return cls(d["label"], _f(d["onset"]), _f(d["offset"]))


@dataclass(frozen=True)
class Timing:
    """The per-second parse of one class: when it is heard, seen, and both.

    JSON: ``{"heard": [[s,e],...], "seen": [[s,e],...], "both": [[s,e],...], "overlap": bool}``.
    ``heard`` (audio events) is empty unless the class is heard (``ClassParse.heard``),
    ``seen`` (visual events) empty unless it is seen; ``both`` (audio-visual events) is
    their intersection, ``overlap`` whether it is non-empty.
    """

    heard: tuple[tuple[float, float], ...]
    seen: tuple[tuple[float, float], ...]
    overlap: bool
    both: tuple[tuple[float, float], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "heard": [[_r(a, 3), _r(b, 3)] for a, b in self.heard],
            "seen": [[_r(a, 3), _r(b, 3)] for a, b in self.seen],
            "both": [[_r(a, 3), _r(b, 3)] for a, b in self.both],
            "overlap": self.overlap,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Timing:
        return cls(heard=_spans(d.get("heard", ())), seen=_spans(d.get("seen", ())), overlap=bool(d.get("overlap")),
                   both=_spans(d.get("both", ())))


# Why a class is reported by ``localize`` (``LocalizeResult.status``): one value per reported class.
PREDICTED = "predicted"  # the video-level (fused) decision predicts it
REQUESTED = "requested"  # asked for with --label; the video-level decision does not predict it
HEARD_ONLY = "heard_only"  # not predicted: only the audio decision reports it (heard)
SEEN_ONLY = "seen_only"  # not predicted: only the visual decision reports it (seen)
HEARD_AND_SEEN_ONLY = "heard_and_seen_only"  # not predicted, though both modality decisions report it
STATUSES = (PREDICTED, REQUESTED, HEARD_ONLY, SEEN_ONLY, HEARD_AND_SEEN_ONLY)
SHOWN_AS_PREDICTED = (PREDICTED, REQUESTED)  # drawn as a prediction; the others are marked as what they are
# the words that mark a class that is not a prediction, wherever it is named (overlay, report, captions)
STATUS_NOTES = {SEEN_ONLY: "seen only", HEARD_ONLY: "heard only", HEARD_AND_SEEN_ONLY: "not predicted"}


def marked_name(label: str, status: str | None) -> str:
    """The one naming rule of every output: ``label`` as it is, or marked as what it is when its
    ``status`` is not a prediction ("violin (heard only)")."""
    note = STATUS_NOTES.get(status or "")
    return f"{label} ({note})" if note else label


@dataclass(frozen=True)
class LocalizeResult:
    """Where and when each reported class is: everything ``classify`` emits, plus

    ``"status": {label: "predicted" | "requested" | "heard_only" | "seen_only" | "heard_and_seen_only"}``,
    ``"visual": {label: [{"t", "box", "score"}, ...]}``, ``"audio": {label: [{"start",
    "end", "score", "heat"}, ...]}``, ``"events": [{"label", "onset", "offset"}, ...]``,
    ``"event_threshold": float``, ``"frame_times": [t, ...]``,
    ``"timing": {label: {"heard", "seen", "both", "overlap"}}`` and, for the synchronous
    variant, ``"sync_segments": {label: [[start, end], ...]}``.

    ``status`` says why each reported class is reported, one value per class: ``predicted``
    (the video-level decision, ``predicted``), ``requested`` (asked for with ``--label``, not
    predicted), or, for a class only a modality's decision reports, ``heard_only``,
    ``seen_only`` or ``heard_and_seen_only`` (not predicted). ``event_threshold`` is the
    window score above which audio windows are events; ``frame_times`` the sampled frame
    instants (seconds; a class has a box only at those where it is seen).
    """

    classification: ClassifyResult
    visual: dict[str, tuple[BoxDetection, ...]] = field(default_factory=dict)
    audio: dict[str, tuple[AudioSegment, ...]] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    timing: dict[str, Timing] = field(default_factory=dict)
    sync_segments: dict[str, tuple[tuple[float, float], ...]] | None = None
    status: dict[str, str] = field(default_factory=dict)  # reported class -> one of STATUSES
    event_threshold: float = 0.0  # E above this marks an audio window as sounding
    frame_times: tuple[float, ...] = ()  # the sampled frame instants, seconds

    ok = True

    @property
    def file(self) -> str:
        return self.classification.file

    def to_json(self) -> dict[str, Any]:
        d = self.classification.to_json()
        d["status"] = dict(self.status)
        d["visual"] = {k: [b.to_json() for b in v] for k, v in self.visual.items()}
        d["audio"] = {k: [s.to_json() for s in v] for k, v in self.audio.items()}
        d["events"] = [e.to_json() for e in self.events]
        d["event_threshold"] = self.event_threshold
        d["frame_times"] = [_r(t, 3) for t in self.frame_times]
        d["timing"] = {k: t.to_json() for k, t in self.timing.items()}
        if self.sync_segments is not None:
            d["sync_segments"] = {
                k: [[_r(a, 3), _r(b, 3)] for a, b in v] for k, v in self.sync_segments.items()
            }
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LocalizeResult:
        sync = d.get("sync_segments")
        return cls(classification=ClassifyResult.from_json(d),
                   visual={k: tuple(BoxDetection.from_json(b) for b in v) for k, v in d.get("visual", {}).items()},
                   audio={k: tuple(AudioSegment.from_json(a) for a in v) for k, v in d.get("audio", {}).items()},
                   events=tuple(Event.from_json(e) for e in d.get("events", ())),
                   timing={k: Timing.from_json(t) for k, t in d.get("timing", {}).items()},
                   sync_segments=None if sync is None else {k: _spans(v) for k, v in sync.items()},
                   status=dict(d.get("status", {})),
                   event_threshold=float(d.get("event_threshold", 0.0)),
                   frame_times=tuple(float(t) for t in d.get("frame_times", ())))


@dataclass(frozen=True)
class SeparateResult:
    """The sound of one class separated from one input (``avscene separate``).

    JSON::

        {"file": str,
         "label": str,                          # the class that was separated
         "label_source": "given" | "predicted", # --label, or the classifier's top class
         "label_score": float|null,             # the classifier's score of a predicted label
         "method": "hybrid" | "mask" | "dictionary" | "ncp",  # both masks averaged, mask network, supervised NMF, or NCP ranking (the paper)
         "k": int|null,                         # NMF components per chunk (dictionary: class + background
                                                # atoms); null for the mask network
         "threshold": float|null,               # ncp: hard-mask τ on the scaled relevance; null: soft
         "chunks": [[start, end], ...],         # seconds; one NMF per chunk (inputs up to 30 s: one)
         "alpha": [[float, ...], ...],          # per chunk, per component: α_k = max_t β_{k,t}
         "alpha_scaled": [[float, ...], ...],   # per chunk: α' in [0, 1] (min–max)
         "kept": [[bool, ...], ...],            # per chunk: mask weight >= 0.5
         "source_path": str|null, "residual_path": str|null,   # files written, null if none
         "sample_rate": int, "duration": float,
         "model": {"id": str, "revision": str|null},
         "warnings": [str, ...]}

    With ``method: "ncp"``, ``alpha``, ``alpha_scaled`` and ``kept`` have one row of ``k``
    values per entry of ``chunks``; with ``"dictionary"`` and ``"mask"`` they are empty (nothing
    is ranked).
    """

    file: str
    label: str
    label_source: str  # "given" | "predicted"
    k: int | None  # None: the mask network (no NMF)
    threshold: float | None
    chunks: tuple[tuple[float, float], ...]  # (n_chunks,) [start, end) seconds
    alpha: tuple[tuple[float, ...], ...]  # (n_chunks, k)
    alpha_scaled: tuple[tuple[float, ...], ...]  # (n_chunks, k)
    kept: tuple[tuple[bool, ...], ...]  # (n_chunks, k)
    sample_rate: int  # Hz of the separated signals (and of the files written)
    duration: float  # seconds
    model: ModelRef
    label_score: float | None = None
    source_path: str | None = None
    residual_path: str | None = None
    warnings: tuple[str, ...] = ()
    method: str = "ncp"  # "hybrid" | "mask" | "dictionary" | "ncp"

    ok = True

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "label": self.label,
            "label_source": self.label_source,
            "label_score": None if self.label_score is None else _r(self.label_score),
            "method": self.method,
            "k": self.k,
            "threshold": self.threshold,
            "chunks": [[_r(a, 3), _r(b, 3)] for a, b in self.chunks],
            "alpha": [[_r(x, 6) for x in row] for row in self.alpha],
            "alpha_scaled": [[_r(x) for x in row] for row in self.alpha_scaled],
            "kept": [[bool(x) for x in row] for row in self.kept],
            "source_path": self.source_path,
            "residual_path": self.residual_path,
            "sample_rate": self.sample_rate,
            "duration": _r(self.duration, 3),
            "model": self.model.to_json(),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SeparateResult:
        return cls(file=d["file"], label=d["label"], label_source=d["label_source"], k=d.get("k"),
                   threshold=None if d.get("threshold") is None else _f(d["threshold"]), chunks=_spans(d["chunks"]),
                   alpha=tuple(tuple(_f(x) for x in row) for row in d["alpha"]),
                   alpha_scaled=tuple(tuple(_f(x) for x in row) for row in d["alpha_scaled"]),
                   kept=tuple(tuple(bool(x) for x in row) for row in d["kept"]), sample_rate=int(d["sample_rate"]),
                   duration=_f(d["duration"]), model=ModelRef.from_json(d["model"]),
                   label_score=None if d.get("label_score") is None else _f(d["label_score"]),
                   source_path=d.get("source_path"), residual_path=d.get("residual_path"),
                   warnings=tuple(d.get("warnings", ())), method=d.get("method", "ncp"))


@dataclass(frozen=True)
class ReportResult:
    """One input's HTML report (``avscene report``): everything ``localize`` emits, plus

    ``"report": {"page": str,                       # the HTML file written
                 "presence": {label: "heard" | "seen" | "heard_and_seen" | "neither"},  # anywhere in the input
                 "files": [str, ...],               # written beside the page (long audio, captions)
                 "left_out": [str, ...],            # what the page does not show, in words
                 "poster": str|null,                # a small JPEG data: URI of one frame (for the index)
                 "separations": [<separate's JSON>, ...]}``  # with --separate: one per predicted class

    ``presence`` is the video-level decisions: ``heard_and_seen`` is heard somewhere and seen
    somewhere in the input, not necessarily at the same time (that is ``timing.both``).
    """

    localization: LocalizeResult
    page: str
    presence: dict[str, str]
    files: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()
    poster: str | None = None
    separations: tuple[SeparateResult, ...] = ()

    ok = True

    @property
    def file(self) -> str:
        return self.localization.file

    def to_json(self) -> dict[str, Any]:
        d = self.localization.to_json()
        d["report"] = {"page": self.page, "presence": dict(self.presence), "files": list(self.files),
                       "left_out": list(self.left_out), "poster": self.poster,
                       "separations": [s.to_json() for s in self.separations]}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReportResult:
        rep = d["report"]
        return cls(localization=LocalizeResult.from_json(d), page=rep["page"], presence=dict(rep["presence"]),
                   files=tuple(rep.get("files", ())), left_out=tuple(rep.get("left_out", ())), poster=rep.get("poster"),
                   separations=tuple(SeparateResult.from_json(x) for x in rep.get("separations", ())))


@dataclass(frozen=True)
class Thumbnail:
    """A sampled frame as shown in a report (in memory, not JSON): ``image`` (H, W, 3) uint8 RGB."""

    t: float  # seconds: the sampled instant
    label: str | None  # the class whose boxes are drawn on it; None: the plain frame
    image: Any  # np.ndarray (H, W, 3) uint8 RGB, already drawn on


@dataclass(frozen=True)
class AudioTrack:
    """A signal a report lets the reader play (in memory, not JSON)."""

    title: str  # what a person reads next to the player
    kind: str  # "original" | "source" | "residual"
    label: str | None  # the class of a separated source / residual
    samples: Any  # np.ndarray (N,) float32 mono in [-1, 1]
    sample_rate: int
    embed: bool  # in the page (data: URI); False: written beside the page and linked


@dataclass(frozen=True)
class ReportPage:
    """Everything one report page shows, computed (``avscene.tasks.report``); the writer only formats it."""

    localization: LocalizeResult
    classes: tuple[str, ...]  # timeline rows, in order: the reported classes
    presence: dict[str, str]  # label -> "heard" | "seen" | "heard_and_seen" | "neither" (anywhere in the input)
    colours: dict[str, tuple[int, int, int]]  # label -> RGB (the overlay's colours)
    thumbnails: dict[str, tuple[Thumbnail, ...]]  # label -> its row's frames, with its boxes
    poster: Thumbnail | None  # a small plain frame for the index
    tracks: tuple[AudioTrack, ...]
    separations: tuple[SeparateResult, ...]
    left_out: tuple[str, ...]  # what the page does not show, in words
    n_frames: int  # frames sampled from the input (thumbnails show a subset)
    command: str  # the exact command line
    version: str  # avscene's version


# What one input of a task gives: its result, or the FailedInput that stands for it.
TaskResult = ClassifyResult | LocalizeResult | SeparateResult | ReportResult
InputResult = TaskResult | FailedInput


def result_from_json(d: dict[str, Any]) -> InputResult:
    """One JSON record (a ``--jsonl`` line) back as its typed result, whichever task wrote it.

    Raises:
        ValueError: ``d`` is not a result record.
    """
    if "file" in d and "error" in d:
        return FailedInput.from_json(d)
    if "report" in d:
        return ReportResult.from_json(d)
    if "label_source" in d:
        return SeparateResult.from_json(d)
    if "timing" in d:
        return LocalizeResult.from_json(d)
    if "labels" in d and "file" in d:
        return ClassifyResult.from_json(d)
    raise ValueError(f"not a result record (keys: {sorted(d)[:6]})")
