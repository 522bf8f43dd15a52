"""Separation evaluation: avscene and baselines on a separation set (the paper's Table V).

The set (avbench ``val/sep``): ``sep.csv`` (``mixture,label,snr_db,group``),
``clips/<mixture>.mp4`` and ``stems/<mixture>/<label>.flac``. For every mixture
the decoded mp4 audio (16 kHz, trimmed or zero-padded to the stem's length) is
separated and each estimate is scored against the clean stem with BSS Eval SDR
(``fast_bss_eval``, 512 taps) and SI-SDR (:mod:`avscene.evaluation.metrics.separation`).

Methods (rows of the table): every method of :data:`avscene.separation.registry.METHODS` that
the model carries, each run as ``separate`` runs it (:func:`avscene.separation.streaming.streaming_separation`,
the same chunks and cross-fades), its rows named by the registry:

* the hybrid (``separate --method hybrid``: the mean of the mask network's and the
  supervised-NMF masks), label known and unknown, when both are there;
* the mask network (``separate --method mask``), label known and unknown, when the
  model carries one (``avscene train-separator``);
* avscene with soft masks, τ = 0.1 and τ = 0.2, each with the label known (the
  stem's class) and unknown (the classifier's top class on the clip, audio and
  video); one NMF per mixture (same K and seed) and one scoring pass serve all
  six, since the network scores every class at once;
* supervised NMF, NMF Mel-clustering (activity rule and best cluster), the
  mixture and the oracle (:mod:`avscene.evaluation.separation_baselines`); the
  clustering and the oracle use avscene's NMF of the mixture.

Means are over the mixtures where a score is defined, per SNR and overall.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from avscene.errors import UsageError
from avscene.proposals.nmf import NMFOptions
from avscene.separation.dictionary import Dictionaries
from avscene.separation.methods import ScoredComponents, score_components
from avscene.checkpoint.parts import SeparationParts
from avscene.separation.registry import METHODS as SEPARATION_METHODS
from avscene.separation.registry import Method, MethodName, StrategyInputs, missing_parts
from avscene.tasks._pipeline import analyse, ranked_labels
from avscene.tasks.separate import CHUNK_SECONDS, CROSSFADE_SECONDS
from avscene.evaluation import separation_baselines as sb
from avscene.evaluation.metrics import json_float
from avscene.evaluation.metrics.separation import SeparationScores, separation_scores, sdr

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel

T = TypeVar("T")
R = TypeVar("R")
MODES = ("label known", "label unknown")
ROW_ORDER = (MethodName.HYBRID, MethodName.MASK, MethodName.NCP, MethodName.DICTIONARY)  # the table's order
MEL_ACTIVE = "NMF Mel-clustering (activity rule)"
MEL_BEST = "NMF Mel-clustering (best cluster)"
MIXTURE = "mixture"
ORACLE = "oracle"


def _rows(method: Method) -> list[tuple[str, str, float | None]]:
    """``(mode, row name, threshold)`` of each row of ``method``, label known first."""
    return [(mode, method.row(mode, setting), threshold) for mode in MODES
            for setting, threshold in method.thresholds or (("", None),)]


METHODS = (*[row for name in ROW_ORDER for _, row, _ in _rows(SEPARATION_METHODS[name])],
           MEL_ACTIVE, MEL_BEST, MIXTURE, ORACLE)


@dataclass(frozen=True)
class SepItem:
    """One row of ``sep.csv``."""

    mixture: str
    label: str
    snr_db: float
    group: str


@dataclass(frozen=True)
class MixtureScores:
    """Every method's scores on one mixture."""

    mixture: str
    label: str
    predicted: str  # the classifier's top class (label-unknown mode)
    snr_db: float
    scores: dict[str, SeparationScores]

    def to_json(self) -> dict[str, Any]:
        return {"mixture": self.mixture, "label": self.label, "predicted": self.predicted,
                "snr_db": self.snr_db, "scores": {k: v.to_json() for k, v in self.scores.items()}}


@dataclass(frozen=True)
class SeparationReport:
    """Scores of every method on a separation set. JSON: see ``to_json``."""

    model: dict[str, Any]
    sep_dir: str
    nmf: dict[str, Any]
    methods: tuple[str, ...]
    snrs: tuple[float, ...]
    mixtures: tuple[MixtureScores, ...]
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def n_mixtures(self) -> int:
        return len(self.mixtures)

    def summary(self) -> dict[str, dict[str, dict[str, float | int]]]:
        """``method -> snr ("-5", "0", ... or "all") -> {"sdr", "si_sdr", "n"}`` (means in dB)."""
        out: dict[str, dict[str, dict[str, float | int]]] = {}
        for method in self.methods:
            out[method] = {}
            for key in [*(str(s) for s in self.snrs), "all"]:
                rows = [m.scores[method] for m in self.mixtures
                        if method in m.scores and (key == "all" or str(m.snr_db) == key)]
                sdrs = [r.sdr for r in rows if math.isfinite(r.sdr)]
                sis = [r.si_sdr for r in rows if math.isfinite(r.si_sdr)]
                if rows:
                    out[method][key] = {"sdr": float(np.mean(sdrs)) if sdrs else math.nan,
                                        "si_sdr": float(np.mean(sis)) if sis else math.nan, "n": len(sdrs)}
        return out

    def to_json(self) -> dict[str, Any]:
        summary = {m: {k: {"sdr": json_float(v["sdr"]), "si_sdr": json_float(v["si_sdr"]), "n": v["n"]}
                       for k, v in per.items()} for m, per in self.summary().items()}
        return {"model": self.model, "sep_dir": self.sep_dir, "nmf": self.nmf, "methods": list(self.methods),
                "snrs": list(self.snrs), "n_mixtures": self.n_mixtures, "summary": summary,
                "mixtures": [m.to_json() for m in self.mixtures],
                "failed": [{"mixture": f, "error": e} for f, e in self.failed]}


def read_sep_manifest(sep_dir: str | Path, *, limit: int | None = None) -> list[SepItem]:
    """The rows of ``SEP_DIR/sep.csv`` (the first ``limit`` of them)."""
    path = Path(sep_dir) / "sep.csv"
    if not path.is_file():
        raise UsageError(f"{path} not found: SEP_DIR must hold sep.csv, clips/ and stems/ (avbench val/sep)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"mixture", "label", "snr_db"} - set(reader.fieldnames or ())
        if missing:
            raise UsageError(f"{path}: missing column(s) {sorted(missing)}; expected mixture,label,snr_db,group")
        items = [SepItem(r["mixture"], r["label"], float(r["snr_db"]), r.get("group", "")) for r in reader]
    return items[:limit] if limit is not None else items


def dictionaries_for(loaded: LoadedModel, sep_dir: str | Path, manifest: str | Path, *, limit: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Dictionaries:
    """The supervised-NMF dictionaries for the classes of the separation set: the model's own
    (``avscene train-dictionaries``) when it has them all, else learnt now from the single-label
    clips of the training ``manifest`` (:func:`avscene.train.dictionaries.learn_from_manifest`)."""
    from avscene.train.dictionaries import learn_from_manifest

    needed = sorted({it.label for it in read_sep_manifest(sep_dir, limit=limit)})
    own = loaded.separation.dictionaries
    if own is not None and set(needed) <= set(own.classes):
        return own
    # every label, not only the set's: "label unknown" separates whatever class is predicted
    return learn_from_manifest(manifest, list(loaded.labels), progress=progress)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x[:n], (0, max(0, n - len(x))))


def evaluate_mixture(item: SepItem, sep_dir: Path, loaded: LoadedModel, *, dictionaries: Dictionaries | None,
                     nmf: NMFOptions) -> MixtureScores:
    """Score every method on one mixture (one decode, one NMF, one scoring pass)."""
    import soundfile as sf

    from avscene.io.decode import read_audio

    if item.label not in loaded.labels:
        raise UsageError(f"the model does not know the class {item.label!r} of mixture {item.mixture}")
    clip = sep_dir / "clips" / f"{item.mixture}.mp4"
    ref, rate = sf.read(sep_dir / "stems" / item.mixture / f"{item.label}.flac", dtype="float64")
    if rate != loaded.preprocess.sample_rate:
        raise UsageError(f"stem of {item.mixture} is at {rate} Hz; the model works at "
                         f"{loaded.preprocess.sample_rate} Hz")
    mix = _fit_length(read_audio(clip, sample_rate=rate), len(ref))
    predicted = ranked_labels(analyse(clip, loaded).output.scores.numpy(), loaded.labels)[0].label
    sc = score_components(mix, loaded, nmf)  # one NMF and scoring pass: the ncp rows and the baselines
    parts = SeparationParts(dictionaries=dictionaries, mask_net=loaded.separation.mask_net)
    est = method_estimates(mix, item.label, loaded, parts, nmf, sc, mode=MODES[0])
    if predicted == item.label:  # a correct prediction: the same estimates
        unknown = [row for _, row, _ in mode_rows(parts, MODES[1])]
        est.update(zip(unknown, list(est.values())))
    else:
        est.update(method_estimates(mix, predicted, loaded, parts, nmf, sc, mode=MODES[1]))
    clusters, active = sb.mel_clustering(sc.dec, seed=nmf.seed, stft_opts=nmf.stft_opts)
    est[MEL_ACTIVE] = clusters[active]
    est[MEL_BEST] = max(clusters, key=lambda c: _finite(sdr(c, ref)))
    est[MIXTURE] = sb.mixture_estimate(mix)
    est[ORACLE] = sb.oracle_estimate(sc.dec, ref, mix, stft_opts=nmf.stft_opts)
    scored: dict[int, SeparationScores] = {}  # an estimate shared by two methods is scored once
    for m in est:
        if id(est[m]) not in scored:
            scored[id(est[m])] = separation_scores(est[m], ref)
    scores = {m: scored[id(est[m])] for m in METHODS if m in est}
    return MixtureScores(item.mixture, item.label, predicted, item.snr_db, scores)


def mode_rows(parts: SeparationParts, mode: str, only: Collection[MethodName] | None = None,
              ) -> list[tuple[Method, str, float | None]]:
    """``(method, row, threshold)`` of every row of ``mode`` whose method ``parts`` carries, table order."""
    return [(method, row, threshold) for name in ROW_ORDER if only is None or name in only
            for method in (SEPARATION_METHODS[name],) if not missing_parts(method, parts)
            for m, row, threshold in _rows(method) if m == mode]


def method_estimates(mix: np.ndarray, label: str, loaded: LoadedModel, parts: SeparationParts, nmf: NMFOptions,
                     sc: ScoredComponents, *, mode: str = MODES[0], only: Collection[MethodName] | None = None,
                     ) -> dict[str, np.ndarray]:
    """Each carried method's estimate of ``label`` in ``mix`` as ``separate`` makes it, keyed by its
    row of ``mode``; ``sc`` is the NMF and scores of ``mix`` (shared by the ncp rows)."""
    est: dict[str, np.ndarray] = {}
    for method, row, threshold in mode_rows(parts, mode, only):
        inputs = StrategyInputs(loaded, parts, loaded.labels.index(label), nmf, threshold,
                                score=lambda x: sc if np.array_equal(x, mix) else score_components(x, loaded, nmf))
        est[row] = separate_source(mix, method, inputs)
    return est


def separate_source(mixture: np.ndarray, method: Method, inputs: StrategyInputs) -> np.ndarray:
    """What ``separate`` writes as the source of ``mixture`` (N,) at the model's rate with ``method``:
    the same chunks and cross-fades (:func:`avscene.separation.streaming.streaming_separation`)."""
    from avscene.separation.streaming import separate_array, streaming_separation

    sr = inputs.loaded.preprocess.sample_rate
    sep = streaming_separation(method, inputs, size=round(CHUNK_SECONDS * sr), overlap=round(CROSSFADE_SECONDS * sr))
    return separate_array(sep, mixture)[0]


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def each_item(items: Sequence[T], run: Callable[[T], R], name: Callable[[T], str], *,
              progress: Callable[[int, int], None] | None = None) -> tuple[list[R], list[tuple[str, str]]]:
    """``run`` on every item: the results, and ``(name, error)`` of each that raised (re-raised
    with ``AVSCENE_DEBUG`` set): one failing mixture is reported, not fatal."""
    import os

    done: list[R] = []
    failed: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        try:
            done.append(run(item))
        except Exception as e:  # noqa: BLE001 - reported in the evaluation, not fatal
            if os.environ.get("AVSCENE_DEBUG"):
                raise
            failed.append((name(item), f"{type(e).__name__}: {e}"))
        if progress:
            progress(i + 1, len(items))
    return done, failed


def evaluate_separation(loaded: LoadedModel, sep_dir: str | Path, *, dictionaries: Dictionaries | None = None,
                        nmf: NMFOptions = NMFOptions(), limit: int | None = None,
                        progress: Callable[[int, int], None] | None = None) -> SeparationReport:
    """Evaluate avscene and the baselines on every mixture of ``sep_dir`` (or the first ``limit``).

    A mixture that fails is reported in ``failed`` and left out of the means.
    ``dictionaries=None`` leaves supervised NMF out.
    """
    sep_dir = Path(sep_dir)
    items = read_sep_manifest(sep_dir, limit=limit)
    done, failed = each_item(items, lambda it: evaluate_mixture(it, sep_dir, loaded, dictionaries=dictionaries, nmf=nmf),
                             lambda it: it.mixture, progress=progress)
    methods = tuple(m for m in METHODS if any(m in d.scores for d in done))
    return SeparationReport(
        model={"id": loaded.model_id, "revision": loaded.revision, "variant": loaded.config.variant},
        sep_dir=str(sep_dir), nmf={"k": nmf.k, "divergence": nmf.divergence, "seed": nmf.seed},
        methods=methods, snrs=tuple(sorted({it.snr_db for it in items})), mixtures=tuple(done),
        failed=tuple(failed))


def format_rows(report: SeparationReport, metric: str) -> list[tuple[str, ...]]:
    """The table as text: one row per method, the mean ``metric`` ("sdr" or "si_sdr") per SNR, then overall."""
    summary = report.summary()
    keys = [*(str(s) for s in report.snrs), "all"]
    fmt = lambda v: "—" if v is None or not math.isfinite(v) else f"{v:+.2f}"  # noqa: E731
    return [(m, *[fmt(summary[m][k][metric]) if k in summary[m] else "—" for k in keys]) for m in report.methods]
