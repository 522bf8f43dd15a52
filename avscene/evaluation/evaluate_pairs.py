"""Two-source separation evaluation (``avscene evaluate-separation --pairs``): one class out of two.

The single-source set (:mod:`avscene.evaluation.evaluate_sep`) puts one class over ambience; here
a class is separated from *another class* sounding at the same time. Three sets:

* **clips** — the clips of a split with stems (avbench ``val/``, ``val_shift/``:
  ``ground_truth.jsonl``, ``clips/<clip>.*``, ``stems/<clip>/<class>.flac``) whose ground
  truth has two or more *sounding* classes (events with an audio interval). Each sounding
  class is separated from the clip's soundtrack (trimmed or zero-padded to the stem's length)
  and scored against its own stem.
* **duets** — synthetic: the stems of two different classes from two different clips, the
  interferer rolled so that its event's centre meets the target's (they overlap), mixed at a
  target-to-interferer ratio of −5, 0 and +5 dB (powers over the whole stems). Per pair kind
  (instrument + instrument, instrument + street, street + street) and SNR, ``per_cell`` duets
  drawn without replacement, deterministic by ``seed``.
* **holdout** — the two-source hold-out of training clips (no stem there): the held-out
  training clips (every ``HOLDOUT_EVERY``-th, as ``train-separator`` holds them out) with a
  single label that the audio network hears; two clips with different labels mixed like the
  duets (no roll), the target the *whole soundtrack* of the queried clip, its own background
  included. It is the only set a choice may be made on. With it, its one-source counterpart:
  each held-out clip over procedural ambience of the *training* noise families
  (:func:`avscene.dsp.noise.training_noise`) at the same ratios (kinds ``instrument+ambience``,
  ``street+ambience``), so one choice weighs both cases.
* **remix** — the hold-out of bootstrapped remixing (``train-separator --objective remix``;
  :mod:`avscene.train.remix`): the split is a teacher cache, and its held-out clips' teacher
  estimates are remixed like the hold-out (``s_A + s_B`` per pair kind and SNR, no roll), with
  the teacher's residual ``r_C`` of a held-out clip of a third class at ``REMIX_RESIDUAL_DB``
  below the two; the one-source half is each ``s_A`` over such a residual at -5, 0, +5 dB (kinds
  ``instrument+ambience``, ``street+ambience``: the "ambience" is another clip's residual). The
  reference is the teacher's estimate ``s_A``: the set is biased towards the teacher (what it
  left in ``s_A`` counts as right), but the background is in no reference, so it can tell
  separating from keeping background, which the hold-out cannot (its targets hold theirs).

Every estimate is scored with SDR (BSS Eval, ``fast_bss_eval``, 512 taps), SDR improvement
over the mixture and SI-SDR (:mod:`avscene.evaluation.metrics.separation`). Rows: each method the model
carries, label known, as ``separate`` runs it (:func:`avscene.evaluation.evaluate_sep.method_estimates`),
supervised NMF among them, the mixture and the ideal ratio mask
(:func:`avscene.evaluation.separation_baselines.irm_estimate`, the oracle bound).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avscene.errors import UsageError
from avscene.evaluation.metrics import json_float
from avscene.evaluation.metrics.separation import separation_scores

if TYPE_CHECKING:
    from avscene.checkpoint.load import LoadedModel
    from avscene.proposals.nmf import NMFOptions
    from avscene.separation.dictionary import Dictionaries
    from avscene.separation.registry import MethodName

INSTRUMENTS = frozenset({"accordion", "banjo", "drum", "flute", "guitar", "piano", "saxophone", "trumpet", "violin"})
KINDS = ("instrument+instrument", "instrument+street", "street+street", "instrument+ambience", "street+ambience")
NOISE = "noise:"  # an interferer path with this prefix is training-family ambience drawn with the seed after it
DUET_SNRS = (-5.0, 0.0, 5.0)
SETS = ("clips", "duets", "holdout", "remix")
REMIX_RESIDUAL_DB = 0.0  # remix set: the two sources' sum over the third clip's residual (dB)
MIXTURE = "mixture"
IRM = "oracle (IRM)"
SAMPLE_RATE = 16000


def pair_kind(a: str, b: str | None) -> str:
    """``instrument+instrument``, ``instrument+street`` or ``street+street`` (any order); with ``b``
    None (ambience) ``instrument+ambience`` or ``street+ambience``."""
    if b is None:
        return KINDS[3] if a in INSTRUMENTS else KINDS[4]
    n = (a in INSTRUMENTS) + (b in INSTRUMENTS)
    return KINDS[2 - n]


@dataclass(frozen=True)
class PairItem:
    """One estimate to score: ``label`` out of a mixture with ``other``.

    Paths are relative to the split folder. ``mixture`` is a file (a clip's soundtrack) or
    None: then the mixture is ``target`` plus ``interferer`` rolled by ``shift`` samples and
    scaled to ``snr_db`` below it.
    """

    set: str  # "clips" | "duets" | "holdout" | "remix"
    name: str
    kind: str
    snr_db: float | None  # None for the clips (their own mix)
    label: str
    other: str
    target: str
    interferer: str | None = None
    mixture: str | None = None
    shift: int = 0
    residual: str | None = None  # also mixed in, REMIX_RESIDUAL_DB below target plus interferer (remix set)

    @property
    def group(self) -> str:
        """``kind`` for clips, ``kind snr`` for mixed pairs: a column of the tables."""
        return self.kind if self.snr_db is None else f"{self.kind} {self.snr_db:+g}"

    def to_json(self) -> dict[str, Any]:
        return {"set": self.set, "name": self.name, "kind": self.kind, "snr_db": self.snr_db, "label": self.label,
                "other": self.other}


# --------------------------------------------------------------------------- the sets


def read_ground_truth(split: Path) -> list[dict[str, Any]]:
    path = split / "ground_truth.jsonl"
    if not path.is_file():
        raise UsageError(f"{path} not found: --pairs needs a split with ground_truth.jsonl and stems/ (avbench val/)")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def sounding(record: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """The classes of a ground-truth record that are heard, each with its first audio interval (s)."""
    out: dict[str, tuple[float, float]] = {}
    for e in record.get("events", []):
        if e.get("audio"):
            out.setdefault(e["class"], tuple(e["audio"]))
    return out


def _soundtrack(split: Path, clip: str) -> str:
    found = sorted((split / "clips").glob(f"{clip}.*"))
    if not found:
        raise UsageError(f"no soundtrack clips/{clip}.* in {split}")
    return str(found[0].relative_to(split))


def clip_items(split: Path) -> list[PairItem]:
    """Each sounding class of each clip with two or more, against the first other one heard."""
    items = []
    for r in read_ground_truth(split):
        heard = sorted(sounding(r))
        if len(heard) < 2:
            continue
        track = _soundtrack(split, r["clip"])
        for c in heard:
            other = next(o for o in heard if o != c)
            items.append(PairItem("clips", f"{r['clip']}/{c}", pair_kind(c, other), None, c, other,
                                  f"stems/{r['clip']}/{c}.flac", mixture=track))
    return items


def duet_items(split: Path, *, per_cell: int, seed: int = 0, snrs: Sequence[float] = DUET_SNRS,
               sr: int = SAMPLE_RATE) -> list[PairItem]:
    """``per_cell`` duets per pair kind and SNR (see the module docstring), deterministic by ``seed``.

    Candidates are every ordered pair (target stem, interferer stem) of different classes from
    different clips; each cell draws ``per_cell`` of its kind without replacement (fewer when
    there are fewer).
    """
    stems = [(r["clip"], c, iv) for r in read_ground_truth(split) for c, iv in sorted(sounding(r).items())]
    items = []
    for kind, snr, i, j in draw_pairs([(clip, c) for clip, c, _ in stems], per_cell=per_cell, seed=seed, snrs=snrs):
        (ca, la, ia), (cb, lb, ib) = stems[i], stems[j]
        shift = int(round((sum(ia) - sum(ib)) / 2 * sr))  # the interferer's event centre onto the target's
        items.append(PairItem("duets", f"{ca}/{la} + {cb}/{lb}", kind, snr, la, lb,
                              f"stems/{ca}/{la}.flac", f"stems/{cb}/{lb}.flac", shift=shift))
    return items


def draw_pairs(sources: Sequence[tuple[str, str]], *, per_cell: int, seed: int, snrs: Sequence[float],
               ) -> list[tuple[str, float, int, int]]:
    """``(kind, snr, i, j)``: per pair kind and SNR, ``per_cell`` ordered pairs of ``sources``
    ``(clip, class)`` from different clips and of different classes, drawn without replacement."""
    by_kind: dict[str, list[tuple[int, int]]] = {k: [] for k in KINDS}
    for i, (ca, la) in enumerate(sources):
        for j, (cb, lb) in enumerate(sources):
            if ca != cb and la != lb:
                by_kind[pair_kind(la, lb)].append((i, j))
    rng = np.random.default_rng(seed)
    out = []
    for kind in KINDS:
        cands = by_kind[kind]
        for snr in snrs:
            for p in (rng.choice(len(cands), size=min(per_cell, len(cands)), replace=False) if cands else []):
                out.append((kind, float(snr), *cands[int(p)]))
    return out


def holdout_clips(manifest: Path, every: int) -> list[tuple[str, str]]:
    """``(path relative to the manifest's folder, label)`` of the held-out single-label training clips."""
    from avscene.train.data import read_manifest

    out = []
    for i, ex in enumerate(read_manifest(manifest)):
        if i % every == every - 1 and len(ex.labels) == 1:
            out.append((str(Path(ex.path).resolve().relative_to(manifest.resolve().parent)), ex.labels[0]))
    return out


def holdout_items(clips: Sequence[tuple[str, str]], *, per_cell: int, seed: int = 0,
                  snrs: Sequence[float] = DUET_SNRS) -> list[PairItem]:
    """Pairs of hold-out clips ``(path, label)`` with different labels, ``per_cell`` per kind and SNR."""
    items = []
    for kind, snr, i, j in draw_pairs(clips, per_cell=per_cell, seed=seed, snrs=snrs):
        (pa, la), (pb, lb) = clips[i], clips[j]
        items.append(PairItem("holdout", f"{Path(pa).stem}/{la} + {Path(pb).stem}/{lb}", kind, snr, la, lb, pa, pb))
    for k, (path, label) in enumerate(clips):  # one source: each clip over training-family ambience
        snr = snrs[k % len(snrs)]
        items.append(PairItem("holdout", f"{Path(path).stem}/{label} + ambience", pair_kind(label, None), float(snr),
                              label, "ambience", path, f"{NOISE}{seed * 100_003 + k}"))
    return items


def remix_items(cache_dir: Path, *, per_cell: int, seed: int = 0, snrs: Sequence[float] = DUET_SNRS) -> list[PairItem]:
    """The remix set of the teacher cache in ``cache_dir`` (see the module docstring), deterministic
    by ``seed``: its held-out clips' estimates, pairs ``per_cell`` per kind and SNR, then each
    estimate over another class's residual."""
    from avscene.train.remix import TeacherCache

    held = [c for c in TeacherCache.read(cache_dir).clips if c.holdout]
    if len({c.label for c in held}) < 3:
        raise UsageError(f"the teacher cache {cache_dir} holds held-out clips of fewer than three classes: "
                         "a remix needs a third class's residual")
    rng = np.random.default_rng(seed + 1)

    def third(*labels: str) -> str:
        others = [c for c in held if c.label not in labels]
        return others[int(rng.integers(len(others)))].residual

    items = []
    for kind, snr, i, j in draw_pairs([(c.name, c.label) for c in held], per_cell=per_cell, seed=seed, snrs=snrs):
        a, b = held[i], held[j]
        items.append(PairItem("remix", f"{Path(a.name).stem}/{a.label} + {Path(b.name).stem}/{b.label} + residual",
                              kind, snr, a.label, b.label, a.source, b.source, residual=third(a.label, b.label)))
    for k, a in enumerate(held):
        items.append(PairItem("remix", f"{Path(a.name).stem}/{a.label} + residual", pair_kind(a.label, None),
                              float(snrs[k % len(snrs)]), a.label, "residual", a.source, third(a.label)))
    return items


# --------------------------------------------------------------------------- signals


def mix_at_snr(target: np.ndarray, interferer: np.ndarray, snr_db: float) -> np.ndarray:
    """``target + g · interferer`` with ``10 log10(P_target / P(g · interferer)) = snr_db`` (float64)."""
    t = np.asarray(target, dtype=np.float64)
    x = np.asarray(interferer, dtype=np.float64)
    p_t, p_x = float(np.mean(t * t)), float(np.mean(x * x))
    if p_t <= 0 or p_x <= 0:
        raise UsageError("mix_at_snr: a silent source")
    return t + x * math.sqrt(p_t / (p_x * 10 ** (snr_db / 10)))


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x[:n], (0, max(0, n - len(x))))


def item_signals(split: Path, item: PairItem, *, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """``(mixture, reference)`` of one item, float64, the reference's length."""
    from avscene.io.decode import read_audio

    ref = np.asarray(read_audio(split / item.target, sample_rate=sr), dtype=np.float64)
    if item.mixture is not None:
        return _fit(np.asarray(read_audio(split / item.mixture, sample_rate=sr), np.float64), len(ref)), ref
    assert item.interferer is not None and item.snr_db is not None
    if item.interferer.startswith(NOISE):
        from avscene.dsp.noise import training_noise

        rng = np.random.default_rng(int(item.interferer[len(NOISE):]))
        return mix_at_snr(ref, training_noise(len(ref), sr=sr, rng=rng), item.snr_db), ref
    other = np.roll(_fit(np.asarray(read_audio(split / item.interferer, sample_rate=sr), np.float64), len(ref)),
                    item.shift)
    mixture = mix_at_snr(ref, other, item.snr_db)
    if item.residual is not None:
        residual = _fit(np.asarray(read_audio(split / item.residual, sample_rate=sr), np.float64), len(ref))
        mixture = mix_at_snr(mixture, residual, REMIX_RESIDUAL_DB)
    return mixture, ref


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class PairScores:
    """SDR, SI-SDR and SDR improvement (dB) of one method on one item."""

    sdr: float
    si_sdr: float
    sdr_improvement: float

    def to_json(self) -> dict[str, Any]:
        return {"sdr": json_float(self.sdr), "si_sdr": json_float(self.si_sdr),
                "sdr_improvement": json_float(self.sdr_improvement)}


@dataclass(frozen=True)
class PairResult:
    item: PairItem
    scores: dict[str, PairScores]

    def to_json(self) -> dict[str, Any]:
        return {**self.item.to_json(), "scores": {k: v.to_json() for k, v in self.scores.items()}}


Estimator = Callable[[np.ndarray, PairItem], Mapping[str, np.ndarray]]  # (mixture, item) -> row -> estimate


def score_item(mixture: np.ndarray, reference: np.ndarray, item: PairItem, estimator: Estimator, *,
               with_oracle: bool = True) -> PairResult:
    """Every row's scores on one item: the estimator's rows, the mixture, and the IRM."""
    from avscene.evaluation import separation_baselines as sb

    est = dict(estimator(mixture, item))
    est[MIXTURE] = mixture
    if with_oracle:
        est[IRM] = sb.irm_estimate(mixture, reference)
    base = separation_scores(mixture, reference)
    scores = {}
    for row, e in est.items():
        s = separation_scores(np.asarray(e, np.float64), reference)
        scores[row] = PairScores(s.sdr, s.si_sdr, s.sdr - base.sdr)
    return PairResult(item, scores)


METRICS = (("sdr", "SDR"), ("sdr_improvement", "SDR improvement"), ("si_sdr", "SI-SDR"))


@dataclass(frozen=True)
class PairsReport:
    """Scores of every row on the two-source sets of a split. JSON: see ``to_json``."""

    model: dict[str, Any]
    split: str
    seed: int
    per_cell: int
    methods: tuple[str, ...]
    results: tuple[PairResult, ...]
    failed: tuple[tuple[str, str], ...] = ()

    def groups(self, set_name: str) -> list[str]:
        """The columns of one set: its kinds (and SNRs) present, in order, then ``all``."""
        present = {r.item.group for r in self.results if r.item.set == set_name}
        order = [k for k in KINDS if k in present]
        order += [f"{k} {s:+g}" for k in KINDS for s in DUET_SNRS if f"{k} {s:+g}" in present]
        snrs = {r.item.snr_db for r in self.results if r.item.set == set_name}
        order += [f"{s:+g} dB" for s in DUET_SNRS if s in snrs]
        return [*order, "all"] if present else []

    def _member(self, r: PairResult, set_name: str, group: str) -> bool:
        if r.item.set != set_name:
            return False
        if group == "all":
            return True
        if group.endswith(" dB"):
            return r.item.snr_db is not None and f"{r.item.snr_db:+g} dB" == group
        return r.item.group == group

    def summary(self) -> dict[str, dict[str, dict[str, dict[str, float | int]]]]:
        """``set -> method -> group -> {"sdr", "sdr_improvement", "si_sdr", "n"}`` (means in dB, finite only)."""
        out: dict[str, dict[str, dict[str, dict[str, float | int]]]] = {}
        for set_name in SETS:
            groups = self.groups(set_name)
            if not groups:
                continue
            out[set_name] = {}
            for m in self.methods:
                out[set_name][m] = {}
                for g in groups:
                    rows = [r.scores[m] for r in self.results if m in r.scores and self._member(r, set_name, g)]
                    if not rows:
                        continue
                    cell: dict[str, float | int] = {}
                    for key, _ in METRICS:
                        vals = [getattr(x, key) for x in rows if math.isfinite(getattr(x, key))]
                        cell[key] = float(np.mean(vals)) if vals else math.nan
                    cell["n"] = len(rows)
                    out[set_name][m][g] = cell
        return out

    def to_json(self) -> dict[str, Any]:
        summary = {s: {m: {g: {k: (json_float(v) if k != "n" else v) for k, v in cell.items()}
                           for g, cell in per.items()} for m, per in rows.items()}
                   for s, rows in self.summary().items()}
        return {"model": self.model, "split": self.split, "seed": self.seed, "per_cell": self.per_cell,
                "methods": list(self.methods), "summary": summary, "results": [r.to_json() for r in self.results],
                "failed": [{"item": f, "error": e} for f, e in self.failed]}


def format_pair_rows(report: PairsReport, set_name: str, metric: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """Columns and rows (method, mean ``metric`` per group) of one set's table."""
    summary = report.summary().get(set_name, {})
    groups = report.groups(set_name)
    fmt = lambda v: "—" if v is None or not math.isfinite(v) else f"{v:+.2f}"  # noqa: E731
    rows = [(m, *[fmt(summary[m][g][metric]) if g in summary.get(m, {}) else "—" for g in groups])
            for m in report.methods if m in summary]
    n = [str(summary[report.methods[0]][g]["n"]) if g in summary.get(report.methods[0], {}) else "0" for g in groups]
    return groups, [*rows, ("n", *n)]


# --------------------------------------------------------------------------- running


def run_pairs(split: Path, items: Sequence[PairItem], estimator: Estimator, *, model: dict[str, Any],
              seed: int, per_cell: int, with_oracle: bool = True,
              progress: Callable[[int, int], None] | None = None) -> PairsReport:
    """Score ``estimator`` on ``items`` of ``split``; a failing item goes to ``failed``."""
    from avscene.evaluation.evaluate_sep import each_item

    def one(item: PairItem) -> PairResult:
        mixture, ref = item_signals(split, item)
        return score_item(mixture, ref, item, estimator, with_oracle=with_oracle)

    done, failed = each_item(items, one, lambda item: item.name, progress=progress)
    rows: list[str] = []
    for r in done:
        rows += [m for m in r.scores if m not in rows]
    rows = [m for m in rows if m not in (MIXTURE, IRM)] + [m for m in (MIXTURE, IRM) if m in rows]
    return PairsReport(model, str(split), seed, per_cell, tuple(rows), tuple(done), tuple(failed))


def model_estimator(loaded: LoadedModel, *, dictionaries: Dictionaries | None, nmf: NMFOptions,
                    only: Collection[MethodName] | None = None) -> Estimator:
    """Each method of ``loaded`` (and the given dictionaries), label known, as ``separate`` runs it."""
    from avscene.separation.methods import score_components
    from avscene.checkpoint.parts import SeparationParts
    from avscene.separation.registry import MethodName
    from avscene.evaluation.evaluate_sep import method_estimates

    parts = SeparationParts(dictionaries=dictionaries, mask_net=loaded.separation.mask_net)

    def estimate(mixture: np.ndarray, item: PairItem) -> dict[str, np.ndarray]:
        if item.label not in loaded.labels:
            raise UsageError(f"the model does not know the class {item.label!r}")
        mix = np.asarray(mixture, dtype=np.float32)
        needs_ncp = only is None or MethodName.NCP in only
        sc = score_components(mix, loaded, nmf) if needs_ncp else None
        return method_estimates(mix, item.label, loaded, parts, nmf, sc, only=only)  # type: ignore[arg-type]

    return estimate


def evaluate_pairs(loaded: LoadedModel, split: str | Path, *, dictionaries: Dictionaries | None, nmf: NMFOptions,
                   per_cell: int = 8, seed: int = 0, sets: Collection[str] = ("clips", "duets"),
                   only: Collection[MethodName] | None = None, holdout_every: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> PairsReport:
    """The two-source evaluation of ``loaded`` on ``split`` (a split with stems, for ``holdout``
    a training ``labels.csv``'s folder, every ``holdout_every``-th clip, for ``remix`` a teacher
    cache of :mod:`avscene.train.remix`)."""
    split = Path(split)
    items: list[PairItem] = []
    if "clips" in sets:
        items += clip_items(split)
    if "duets" in sets:
        items += duet_items(split, per_cell=per_cell, seed=seed)
    if "holdout" in sets:
        from avscene.train.masknet_data import HOLDOUT_EVERY

        clips = heard_clips(loaded, split, holdout_clips(split / "labels.csv", holdout_every or HOLDOUT_EVERY))
        items += holdout_items(clips, per_cell=per_cell, seed=seed)
    if "remix" in sets:
        items += remix_items(split, per_cell=per_cell, seed=seed)
    model = {"id": loaded.model_id, "revision": loaded.revision, "variant": loaded.config.variant}
    return run_pairs(split, items, model_estimator(loaded, dictionaries=dictionaries, nmf=nmf, only=only),
                     model=model, seed=seed, per_cell=per_cell, progress=progress)


def heard_clips(loaded: LoadedModel, root: Path, clips: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The clips whose label the audio network hears: its best window scores the class above 0."""
    from avscene.io.decode import read_audio
    from avscene.train.masknet_data import window_scores

    out = []
    for path, label in clips:
        s, _ = window_scores(read_audio(root / path, sample_rate=SAMPLE_RATE), loaded)
        if float(s[:, loaded.labels.index(label)].max()) > 0:
            out.append((path, label))
    return out


def method_ranking(report: PairsReport, set_name: str = "holdout") -> list[tuple[str, float]]:
    """Each separation method (registry name) with its mean SDR over every item of ``set_name``
    (one-source and two-source together), best first: what ``--set-default`` chooses by. A method's
    row is its label-known row with its default setting (ncp: soft weights)."""
    from avscene.separation.registry import METHODS as REGISTRY

    out = []
    for name, method in REGISTRY.items():
        row = method.row("label known", method.thresholds[0][0] if method.thresholds else "")
        vals = [r.scores[row].sdr for r in report.results if r.item.set == set_name and row in r.scores]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            out.append((name.value, float(np.mean(vals))))
    return sorted(out, key=lambda x: -x[1])


__all__ = ["DUET_SNRS", "INSTRUMENTS", "IRM", "KINDS", "METRICS", "MIXTURE", "PairItem", "PairResult", "PairScores",
           "PairsReport", "clip_items", "draw_pairs", "duet_items", "evaluate_pairs", "format_pair_rows", "heard_clips",
           "holdout_clips", "holdout_items", "item_signals", "REMIX_RESIDUAL_DB", "remix_items", "method_ranking", "mix_at_snr", "model_estimator", "pair_kind",
           "read_ground_truth", "run_pairs", "score_item", "sounding"]
