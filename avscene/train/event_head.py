"""Fit a sound-event head onto a trained checkpoint, on its frozen audio window embeddings.

The two-stream head decides *what* a clip holds; when a class sounds is read from a separate
event head (:class:`avscene.nn.mil.EventHead`, one logit per audio window and class), which this
module trains without touching the rest of the network:

1. :func:`embed_clips` runs the checkpoint's audio branch over each training clip once clean and
   ``draws`` times through the training augmentation (``train.augment.augment_audio``: pitch,
   speed, EQ, training-family backgrounds, gain, noise; never the held-out noise families), and
   keeps the window embeddings *before* the temporal context layer;
2. :func:`splice_embeddings` joins two clips with disjoint labels in time (the splice point is
   ours, so this is still weak supervision: each half keeps its own clip's labels);
3. :func:`fit_event_head` trains the head on such bags through the frozen context layer, pooling
   each half's window probabilities with one of :data:`POOLINGS` (``nn.mil``), and chooses the
   step and the event threshold on spliced bags of the run's *training hold-out* only;
4. :func:`install_event_head` writes a copy of the checkpoint with ``event_head: true`` and the
   head's weights, the threshold folded into its bias (``localize`` then starts an event where a
   window's logit is above 0).

Training on frozen embeddings takes minutes on one CPU thread, so a head can train for thousands
of steps; the video-level decisions are left exactly as they were.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from avscene.errors import UsageError
from avscene.train.data import Example

DRAW_KINDS = ("clean", "augmented", "shifted")


@dataclass(frozen=True)
class EmbeddedClip:
    """One clip's audio window embeddings (before the temporal context layer), for one draw."""

    path: str
    labels: tuple[str, ...]
    draw: str  # DRAW_KINDS
    z: np.ndarray  # (P, d) float32


def embed_clips(loaded, examples: Sequence[Example], *, augment: Any = None, draws: int = 0,
                shifted: int = 0, seed: int = 0, cache_dir: str | Path | None = None,
                progress: Callable[[int, int], None] | None = None) -> list[EmbeddedClip]:
    """Window embeddings of each clip: clean, ``draws`` times through ``augment``
    (``train.augment.AugmentOptions``, the training augmentation) and ``shifted`` times
    through a stronger recording change (``train.event_calibration.shifted_options``).
    Deterministic for ``seed``. The clips are read through the training cache (``ClipCache``)."""
    from avscene.train.augment import clip_tensors
    from avscene.train.data import ClipCache
    from avscene.train.event_calibration import shifted_options

    if (draws or shifted) and augment is None:
        raise UsageError("augmented draws need the augmentation options")
    pre = loaded.preprocess
    cache = ClipCache(cache_dir, pre)
    kinds = [("clean", None)] + [("augmented", augment)] * draws
    kinds += [("shifted", shifted_options(augment))] * shifted if shifted else []
    model = loaded.model.eval()
    out = []
    for i, ex in enumerate(examples):
        clip = dataclasses.replace(cache.get(ex.path), frames=None, boxes=None, frame_times=None)
        if clip.audio is None:
            continue
        for j, (kind, opts) in enumerate(kinds):
            rng = None if opts is None else np.random.default_rng([seed, i, j])
            patches = clip_tensors(clip, pre, rng, opts)["audio"]  # (P, 96, 64)
            with torch.no_grad():
                z = model.forward_audio_features(patches)  # (P, d)
            out.append(EmbeddedClip(str(ex.path), tuple(ex.labels), kind, z.numpy().astype(np.float32)))
        if progress:
            progress(i + 1, len(examples))
    return out


def save_embeddings(path: str | Path, clips: Sequence[EmbeddedClip]) -> None:
    """Write ``clips`` to one ``.npz`` (ragged window counts kept)."""
    lengths = np.array([len(c.z) for c in clips], dtype=np.int64)
    np.savez(path, z=np.concatenate([c.z for c in clips]), lengths=lengths,
             paths=np.array([c.path for c in clips]), draws=np.array([c.draw for c in clips]),
             labels=np.array([";".join(c.labels) for c in clips]))


def load_embeddings(path: str | Path) -> list[EmbeddedClip]:
    """Inverse of :func:`save_embeddings`."""
    with np.load(path) as f:
        ends = np.cumsum(f["lengths"])
        zs = np.split(f["z"], ends[:-1])
        return [EmbeddedClip(str(p), tuple(x for x in str(lab).split(";") if x), str(d), z)
                for p, d, lab, z in zip(f["paths"], f["draws"], f["labels"], zs)]


# ---- splicing in embedding space


def splice_embeddings(first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
    """Two clips' window embeddings joined in time: (P1, d), (P2, d) -> (P1 + P2, d) and the
    part of each window (P1 + P2,) long, 0 for the first clip's, 1 for the second's: the splice
    point is known exactly (no window straddles it)."""
    part = torch.cat([torch.zeros(len(first), dtype=torch.long), torch.ones(len(second), dtype=torch.long)])
    return torch.cat([first, second]), part


def label_vector(labels: Sequence[str], names: Sequence[str]) -> Tensor:
    """(C,) float {0, 1}: which of ``names`` are in ``labels``."""
    return torch.tensor([float(n in labels) for n in names])


@dataclass(frozen=True)
class Bag:
    """One training or hold-out bag: a clip, or two clips spliced in time."""

    z: Tensor  # (P, d) window embeddings (before the temporal context)
    part: Tensor  # (P,) long: 0 first clip, 1 second
    targets: Tensor  # (2, C) each part's clip labels (row 1 all 0 for a single clip)

    @classmethod
    def of(cls, first: EmbeddedClip, second: EmbeddedClip | None, names: Sequence[str]) -> Bag:
        a = torch.from_numpy(first.z)
        if second is None:
            return cls(a, torch.zeros(len(a), dtype=torch.long),
                       torch.stack([label_vector(first.labels, names), torch.zeros(len(names))]))
        z, part = splice_embeddings(a, torch.from_numpy(second.z))
        return cls(z, part, torch.stack([label_vector(first.labels, names), label_vector(second.labels, names)]))

    def window_targets(self) -> Tensor:
        """(P, C) each window's part labels (what the splice says, not when the class sounds)."""
        return self.targets[self.part]


def stack_bags(bags: Sequence[Bag]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pad bags to one batch: z (B, P, d), mask (B, P) bool, part (B, P) long, targets (B, 2, C)."""
    P = max(len(b.z) for b in bags)
    z = bags[0].z.new_zeros(len(bags), P, bags[0].z.shape[1])
    mask = torch.zeros(len(bags), P, dtype=torch.bool)
    part = torch.zeros(len(bags), P, dtype=torch.long)
    for i, b in enumerate(bags):
        z[i, : len(b.z)], mask[i, : len(b.z)], part[i, : len(b.z)] = b.z, True, b.part
    return z, mask, part, torch.stack([b.targets for b in bags])


def disjoint_partners(labels: Sequence[Sequence[str]]) -> list[list[int]]:
    """For each clip, the other clips sharing no label with it (clips without a label have none)."""
    sets = [set(x) for x in labels]
    return [[j for j, o in enumerate(sets) if j != i and s and o and not s & o] for i, s in enumerate(sets)]


def by_clip(clips: Sequence[EmbeddedClip]) -> list[list[EmbeddedClip]]:
    """The draws of each clip, grouped (clip order kept)."""
    groups: dict[str, list[EmbeddedClip]] = {}
    for c in clips:
        groups.setdefault(c.path, []).append(c)
    return list(groups.values())


def sample_bags(groups: Sequence[Sequence[EmbeddedClip]], partners: Sequence[Sequence[int]], names: Sequence[str],
                rng: np.random.Generator, *, batch_size: int, splice_prob: float) -> list[Bag]:
    """A training batch: random clips (a random draw of each), each spliced with probability
    ``splice_prob`` to a random clip of disjoint labels (in random order)."""
    bags = []
    for i in rng.integers(len(groups), size=batch_size):
        first = groups[i][int(rng.integers(len(groups[i])))]
        second = None
        if partners[i] and rng.random() < splice_prob:
            j = partners[i][int(rng.integers(len(partners[i])))]
            second = groups[j][int(rng.integers(len(groups[j])))]
            if rng.random() < 0.5:
                first, second = second, first
        bags.append(Bag.of(first, second, names))
    return bags


def holdout_splices(clips: Sequence[EmbeddedClip], names: Sequence[str], *, seed: int = 0) -> list[list[Bag]]:
    """The hold-out's spliced bags: each clip once first, with a partner of disjoint labels
    (``event_calibration.pair_clips``), once per draw (the k-th draws of both joined; the clean
    draws first). One list of bags per pair."""
    from avscene.train.event_calibration import pair_clips

    groups = {g[0].path: g for g in by_clip(clips)}
    examples = [Example(Path(g[0].path), g[0].labels) for g in groups.values()]
    return [[Bag.of(da, db, names) for da, db in zip(groups[str(a.path)], groups[str(b.path)])]
            for a, b in pair_clips(examples, seed=seed)]


def map_windows(part: Tensor, onto: Tensor) -> np.ndarray:
    """For each window of a bag with parts ``part`` (P,), the window of another draw of the same
    splice (parts ``onto`` (Q,)) at the same relative position inside the same part: (P,) indices.
    Draws differ in speed and start by a few percent, so this is right to about a window."""
    part, onto = part.numpy(), onto.numpy()
    out = np.zeros(len(part), dtype=np.int64)
    for k in (0, 1):
        src, dst = np.flatnonzero(part == k), np.flatnonzero(onto == k)
        if len(src) and len(dst):
            rel = (np.arange(len(src)) + 0.5) / len(src)
            out[src] = dst[np.minimum((rel * len(dst)).astype(np.int64), len(dst) - 1)]
    return out


# ---- window decisions and the hold-out figure


THRESHOLDS = tuple(np.round(np.arange(-3.0, 2.01, 0.25), 2))  # event thresholds tried on the hold-out (logits)


def window_decisions(logits: np.ndarray, gate: np.ndarray, threshold: float) -> np.ndarray:
    """(P, C) event logits -> (P, C) bool sounding windows, as ``localize`` decides them for a model
    with this head and the threshold folded into its bias: an event starts above ``threshold``,
    continues while above ``threshold + localize.EVENT_LOW`` (-0.5), a class without a window
    above gets its best one; only the classes of ``gate`` (C,) bool (the clip-level decision) get
    events."""
    from avscene.tasks.localize import EVENT_LOW, LocalizeOptions, event_windows

    # the installed head's logits are these minus the threshold, under localize's defaults (0, EVENT_LOW)
    opts = LocalizeOptions(event_threshold=threshold, event_low=threshold + EVENT_LOW)
    out = np.zeros(logits.shape, dtype=bool)
    for c in np.flatnonzero(gate):
        out[:, c] = event_windows(logits[:, c], logits[:, c], opts, fallback=True)
    return out


@dataclass(frozen=True)
class HoldoutFigures:
    """Window-level figures of the event decisions on the hold-out's splices, each class gated by
    the splice's labels (standing in for the clip-level decision).

    The training clips have no timestamps. What a splice states exactly is where a class is *not*
    (``outside``: the share of the windows of the part without the class marked sounding); inside
    its part, a class sounds in an unknown share of the windows, so the part's labels over-state
    the reference (``f1_parts`` rewards marking whole parts; kept for the record). ``f1`` is taken
    against a pseudo-reference: the checkpoint's own events (its two-stream head's ``A`` under
    ``localize``'s rule) on the *clean* splice, inside the right part: the head is chosen to find
    those, on the clean and the perturbed draws alike.
    """

    f1: float  # micro window F1 against the pseudo-reference
    precision: float
    recall: float
    outside: float  # share of the windows of the part without the class marked sounding (exact false alarms)
    f1_parts: float  # micro window F1 against the part labels (over-stated reference)

    def to_json(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / max(2 * tp + fp + fn, 1)


def holdout_figures(logits: Sequence[np.ndarray], bags: Sequence[Bag], references: Sequence[np.ndarray],
                    threshold: float) -> HoldoutFigures:
    """:class:`HoldoutFigures` of the (P, C) logits of ``bags`` at ``threshold``, against the
    (P, C) bool pseudo-references."""
    tp = fp = fn = 0
    on_in = n_in = on_out = n_out = 0
    for lg, b, ref in zip(logits, bags, references):
        parts = b.window_targets().numpy() > 0  # (P, C)
        gate = parts.any(axis=0)  # (C,)
        est = window_decisions(lg, gate, threshold)[:, gate]
        parts, ref = parts[:, gate], ref[:, gate]
        tp, fp, fn = tp + int((est & ref).sum()), fp + int((est & ~ref).sum()), fn + int((~est & ref).sum())
        on_in, n_in = on_in + int((est & parts).sum()), n_in + int(parts.sum())
        on_out, n_out = on_out + int((est & ~parts).sum()), n_out + int((~parts).sum())
    return HoldoutFigures(f1=_f1(tp, fp, fn), precision=tp / max(tp + fp, 1), recall=tp / max(tp + fn, 1),
                          outside=on_out / max(n_out, 1), f1_parts=_f1(on_in, on_out, n_in - on_in))


def pseudo_references(pairs: Sequence[Sequence[Bag]], scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each hold-out bag's pseudo-reference (P, C) bool: the windows ``localize``'s rule marks on
    the reference ``scores`` (P, C) of the pair's *clean* bag (its first), inside the part whose
    clip has the class, carried to the other draws by :func:`map_windows`. ``scores``: one (P, C)
    array per bag, in the order of the flattened ``pairs``."""
    out, k = [], 0
    for bags in pairs:
        clean = bags[0]
        parts = clean.window_targets().numpy() > 0
        ref = window_decisions(scores[k], parts.any(axis=0), 0.0) & parts  # (P, C)
        for b in bags:
            out.append(ref[map_windows(b.part, clean.part)])
        k += len(bags)
    return out


# ---- training


@dataclass(frozen=True)
class EventHeadFit:
    """A fitted event head and how it was chosen (the weights are not in ``to_json``)."""

    pooling: str
    steps: int  # trained
    best_step: int  # the step kept (hold-out)
    threshold: float  # the event threshold on its logits, chosen on the hold-out (folded into the bias)
    holdout: HoldoutFigures  # at best_step and threshold
    holdout_at_zero: HoldoutFigures  # at best_step, threshold 0
    reference: HoldoutFigures  # the reference scores' own events (A > 0) on the same bags
    curve: tuple[tuple[int, float, float, float], ...]  # (step, train loss, hold-out F1 at 0, best)
    n_train_clips: int
    n_holdout_bags: int
    alpha: tuple[float, ...] | None  # auto-pool: the α per class learnt by best_step
    weight: np.ndarray  # (C, d)
    bias: np.ndarray  # (C,) before the threshold is folded in

    def to_json(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "steps": self.steps, "best_step": self.best_step,
                "threshold": self.threshold, "holdout": self.holdout.to_json(),
                "holdout_at_zero": self.holdout_at_zero.to_json(), "reference": self.reference.to_json(),
                "curve": [list(c) for c in self.curve],
                "n_train_clips": self.n_train_clips, "n_holdout_bags": self.n_holdout_bags,
                "alpha": None if self.alpha is None else list(self.alpha)}


def _in_context(context: nn.Module | None, z: Tensor, mask: Tensor) -> Tensor:
    if context is None:
        return z
    with torch.no_grad():
        return context(z, mask)


def fit_event_head(context: nn.Module | None, reference: Callable[[Tensor], Tensor], train: Sequence[EmbeddedClip],
                   held: Sequence[EmbeddedClip], names: Sequence[str], *, pooling: str = "auto_pool",
                   steps: int = 3000, batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 1e-4,
                   splice_prob: float = 0.75, eval_every: int = 200, thresholds: Sequence[float] = THRESHOLDS,
                   seed: int = 0, progress: Callable[[int, int], None] | None = None) -> EventHeadFit:
    """Train an :class:`avscene.nn.mil.EventHead` on frozen window embeddings.

    Each step draws ``batch_size`` bags (:func:`sample_bags`), runs them through the frozen temporal
    ``context`` layer (the checkpoint's ``audio_context``; None: none) and the head, pools each
    part's window probabilities with ``pooling`` (``nn.mil.POOLINGS``) and takes the binary log-loss
    against the part's clip labels (``nn.mil.event_loss``). Every ``eval_every`` steps the hold-out
    splices (:func:`holdout_splices` of ``held``) are scored at every threshold of ``thresholds``
    against the pseudo-references of the frozen ``reference`` scores (the checkpoint's
    classification stream, (..., d) -> (..., C): :func:`pseudo_references`); the step and threshold
    with the best hold-out F1 (:class:`HoldoutFigures`) are kept (ties: the earlier step, the
    threshold nearest 0). Deterministic for ``seed``.
    """
    from avscene.nn.mil import EventHead, EventPooling, event_loss

    if not train or not held:
        raise UsageError("fitting an event head needs training clips and hold-out clips")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    d, C = train[0].z.shape[1], len(names)
    head = EventHead(d, C)
    nn.init.constant_(head.lin.bias, -2.0)  # a class sounds in few windows of a bag
    pool = EventPooling(pooling, d, C)
    opt = torch.optim.AdamW([*head.parameters(), *pool.parameters()], lr=lr, weight_decay=weight_decay)
    groups = by_clip(train)
    partners = disjoint_partners([g[0].labels for g in groups])
    pairs = holdout_splices(held, names, seed=seed)
    hold = [b for bags in pairs for b in bags]
    if not hold:
        raise UsageError("the hold-out has no two clips with disjoint labels to splice")
    hz, hmask, _, _ = stack_bags(hold)
    hz = _in_context(context, hz, hmask)  # (H, P, d)
    lengths = [len(b.z) for b in hold]
    with torch.no_grad():
        ref_scores = reference(hz).numpy()  # (H, P, C)
    refs = pseudo_references(pairs, [ref_scores[i, :n] for i, n in enumerate(lengths)])

    def score_holdout() -> dict[float, HoldoutFigures]:
        with torch.no_grad():
            lg = head(hz).numpy()  # (H, P, C)
        rows = [lg[i, :n] for i, n in enumerate(lengths)]
        return {float(t): holdout_figures(rows, hold, refs, float(t)) for t in thresholds}

    best: tuple[float, int, float] | None = None  # (F1, step, threshold)
    kept: dict[str, Tensor] = {}
    kept_alpha: tuple[float, ...] | None = None
    curve, losses = [], []
    for step in range(1, steps + 1):
        z, mask, part, targets = stack_bags(sample_bags(groups, partners, names, rng, batch_size=batch_size,
                                                        splice_prob=splice_prob))
        z = _in_context(context, z, mask)
        logits = head(z)  # (B, P, C)
        loss = event_loss(logits, mask, part, targets, pool=lambda p, m: pool(p, z, m))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % eval_every == 0 or step == steps:
            figs = score_holdout()
            t_best = max(figs, key=lambda t: (figs[t].f1, -abs(t)))
            if best is None or figs[t_best].f1 > best[0] + 1e-9:
                best = (figs[t_best].f1, step, t_best)
                kept = {k: v.detach().clone() for k, v in head.state_dict().items()}
                kept_alpha = None if pool.alpha is None else tuple(float(a) for a in pool.alpha.detach())
            at_zero = figs[0.0].f1 if 0.0 in figs else float("nan")
            curve.append((step, float(np.mean(losses[-eval_every:])), at_zero, figs[t_best].f1))
        if progress:
            progress(step, steps)
    head.load_state_dict(kept)
    figs = score_holdout()
    ref_rows = [ref_scores[i, :n] for i, n in enumerate(lengths)]
    reference_figs = holdout_figures(ref_rows, hold, refs, 0.0)
    zero = figs.get(0.0) or holdout_figures([], [], [], 0.0)
    return EventHeadFit(pooling=pooling, steps=steps, best_step=best[1], threshold=best[2], holdout=figs[best[2]],
                        holdout_at_zero=zero, reference=reference_figs, curve=tuple(curve),
                        n_train_clips=len(groups), n_holdout_bags=len(hold), alpha=kept_alpha,
                        weight=kept["lin.weight"].numpy(), bias=kept["lin.bias"].numpy())


# ---- installing the head into a checkpoint


def install_event_head(checkpoint: str | Path, out: str | Path, fit: EventHeadFit, *, force: bool = False,
                       threshold: float | None = None) -> Path:
    """Write a copy of the checkpoint folder ``checkpoint`` to ``out`` with the fitted event head:
    ``event_head: true`` in its model config, the head's weights (``audio_event.lin.*``) with the
    event threshold (``threshold``, default the fit's) subtracted from the bias, so that ``localize``
    starts an event where a window's logit is above 0; the fit is recorded in
    ``config.json["training"]["event_head_fit"]``. Refuses an existing ``out`` unless ``force``."""
    from avscene.checkpoint.format import CARD_NAME, load_state_dict, read_config, save_folder
    from avscene.errors import OutputError

    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and not force:
        raise OutputError(f"{out} exists; pass --force to overwrite it")
    if out.resolve() == checkpoint.resolve():
        raise OutputError(f"{out} is the checkpoint itself; write the copy elsewhere")
    config = read_config(checkpoint)
    state = load_state_dict(checkpoint)
    t = fit.threshold if threshold is None else float(threshold)
    state = {k: v for k, v in state.items() if not k.startswith("audio_event.")}
    state["audio_event.lin.weight"] = torch.from_numpy(np.ascontiguousarray(fit.weight, dtype=np.float32))
    state["audio_event.lin.bias"] = torch.from_numpy(np.ascontiguousarray(fit.bias - t, dtype=np.float32))
    config["model"]["event_head"] = True
    # an event rule calibrated on the two-stream head's A does not apply to the head's logits
    for k in ("event_start", "event_low", "event_median", "event_fraction", "event_centre", "event_margin",
              "event_scope"):
        config["model"].pop(k, None)
    config.setdefault("training", {})["event_head_fit"] = {**fit.to_json(), "threshold_installed": t}
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(checkpoint, out)
    card = out / CARD_NAME
    if card.is_file():
        card.write_text(card.read_text(encoding="utf-8") + _card_note(fit, t), encoding="utf-8")
    save_folder(out, config=config, state_dict=state, card=None)
    return out


def _card_note(fit: EventHeadFit, t: float) -> str:
    return (f"\n\n## Event head\n\nSound events come from an event head fitted onto this checkpoint's frozen audio "
            f"window embeddings by `avscene train-events` ({fit.pooling} pooling, {fit.best_step} of {fit.steps} "
            f"steps, event threshold {t:+.2f} on its logits, both chosen on the training hold-out's splices: "
            f"window F1 {fit.holdout.f1:.3f} against the two-stream head's own events on the clean splices). The video-level decisions are the "
            f"checkpoint's own.\n")


# ---- the whole recipe


@dataclass(frozen=True)
class EventHeadOptions:
    """What ``avscene train-events`` does (defaults: the recipe of docs/results/event_pooling)."""

    pooling: str = "auto_pool"  # nn.mil.POOLINGS; auto-pool was best on the bundled model's hold-out
    steps: int = 4000
    batch_size: int = 32
    lr: float = 3e-3
    splice_prob: float = 0.75  # share of training bags spliced with a clip of disjoint labels
    draws: int = 8  # augmented draws per training clip (beside the clean one)
    holdout_draws: int = 2  # augmented draws per hold-out clip
    holdout_shifted: int = 2  # draws per hold-out clip through a stronger recording change
    eval_every: int = 200  # hold-out check every this many steps (= steps: the last step is kept)
    seed: int = 0
    threshold: float | None = None  # install this event threshold instead of the hold-out's choice


def train_event_head(checkpoint: str | Path, manifest: str | Path | None, out: str | Path,
                     opts: EventHeadOptions = EventHeadOptions(), *, force: bool = False, device: str = "cpu",
                     cache_dir: str | Path | None = None,
                     progress: Callable[[str, int, int], None] | None = None) -> tuple[Path, EventHeadFit]:
    """Fit an event head onto the checkpoint folder ``checkpoint`` and write the copy with it to ``out``.

    The clips the checkpoint's training run used (its manifest less its hold-out) are embedded
    (:func:`embed_clips`, clean and ``opts.draws`` augmented draws with the run's own augmentation
    options), the head trained (:func:`fit_event_head`) with step and threshold chosen on the run's
    hold-out, and installed (:func:`install_event_head`). ``progress(phase, done, total)``.
    """
    from avscene.errors import OutputError
    from avscene.train.augment import AugmentOptions
    from avscene.train.calibrate import holdout_and_model
    from avscene.train.data import read_manifest, split_examples

    out = Path(out)
    if out.exists() and not force:  # before minutes of work
        raise OutputError(f"{out} exists; pass --force to overwrite it")
    config, held, loaded = holdout_and_model(Path(checkpoint), manifest, device)
    cfg = loaded.config
    if not cfg.uses_audio:
        raise UsageError(f"{checkpoint}: the {cfg.variant!r} variant hears nothing; no events to learn")
    if cfg.variant == "wsddn":
        raise UsageError(f"{checkpoint}: the 'wsddn' variant's window scores are class probabilities, not "
                         "the signed classification stream A the hold-out's pseudo-reference is taken from")
    training = config["training"]
    held_paths = {str(e.path) for e in held}
    if training.get("val_manifest"):
        train = read_manifest(manifest or training["manifest"])
    else:
        from avscene.train.calibrate import recorded_path

        path = manifest or recorded_path(training, "manifest", checkpoint)
        train, _ = split_examples(read_manifest(path), float(training["val_split"]), int(training["seed"]))
    train = [e for e in train if str(e.path) not in held_paths]
    augment = AugmentOptions.from_dict(training.get("augment_opts") or {})

    def report(phase: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda d, n: progress(phase, d, n))

    held_z = embed_clips(loaded, held, augment=augment, draws=opts.holdout_draws, shifted=opts.holdout_shifted,
                         seed=opts.seed + 1, cache_dir=cache_dir, progress=report("embedding the hold-out"))
    train_z = embed_clips(loaded, train, augment=augment, draws=opts.draws, seed=opts.seed, cache_dir=cache_dir,
                          progress=report("embedding the training clips"))
    m = loaded.model
    fit = fit_event_head(m.audio_context, m.audio_head.classify, train_z, held_z, list(loaded.labels),
                         pooling=opts.pooling, steps=opts.steps, batch_size=opts.batch_size, lr=opts.lr,
                         splice_prob=opts.splice_prob, eval_every=opts.eval_every, seed=opts.seed,
                         progress=report("training the event head"))
    return install_event_head(checkpoint, out, fit, force=force, threshold=opts.threshold), fit
