"""Supervised NMF with dictionaries learnt from weakly labelled clips (``separate --method dictionary``).

Smaragdis, Raj & Shashanka (2007); Schmidt & Olsson (2006). ``CLASS_ATOMS`` spectral atoms
per class and ``BACKGROUND_ATOMS`` background atoms, all on the separation STFT (1024 / 256,
:mod:`avscene.dsp.stft`), learnt from *training* clips that carry only video-level labels:

1. background dictionary: KL-NMF of the quietest ``BACKGROUND_QUANTILE`` (20 %) of the frames
   of every training clip used (per clip, by frame energy): with events active at most part of
   a clip, those are mostly background only;
2. class dictionary: KL-NMF of the frames of the class's single-label clips with
   ``W = [W_class, W_background]`` and the background part fixed, so the class atoms model
   only what the background atoms cannot;
3. separation: the mixture's activations are fitted with ``[W_class, W_background]`` fixed
   and the source is the class part of the mask (:func:`separate_with_dictionaries`).

No clean stem, timestamp or box is used anywhere. A checkpoint carries its dictionaries in
``dictionaries.safetensors``, described under ``"separation"`` in ``config.json``
(:meth:`Dictionaries.tensors` / :meth:`Dictionaries.from_tensors`). Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from avscene.dsp.nmf import nmf
from avscene.dsp.stft import STFTOptions, stft
from avscene.errors import CheckpointError, UsageError
from avscene.proposals.nmf import MASK_EPS
from avscene.separation.ranking import separate_with_mask

CLASS_PREFIX = "class."  # tensor name of a class dictionary: class.<label>
CLASS_ATOMS = 16  # spectral atoms per class dictionary
BACKGROUND_ATOMS = 16  # atoms of the shared background dictionary
BACKGROUND_QUANTILE = 0.2  # quietest fraction of each training clip's frames taken as background
MAX_FRAMES = 6000  # frames per dictionary fit (evenly subsampled): ~100 s of audio at a 16-ms hop
LEARN_ITER = 150  # KL multiplicative updates when learning a dictionary
FIT_ITER = 200  # KL updates of the activations of a test mixture
NMF_EPS = 1e-10  # floor of denominators in the updates


# --------------------------------------------------------------------------- KL-NMF with fixed atoms


def kl_nmf(V: torch.Tensor, *, k_free: int, W_fixed: torch.Tensor | None = None, n_iter: int,
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """KL-NMF ``V ≈ [W_free, W_fixed] H`` where only ``W_free`` and ``H`` are learnt:
    :func:`avscene.dsp.nmf.nmf` with fixed atoms, run for ``n_iter`` iterations (or until the
    divergence stops decreasing).

    Returns:
        ``(W, H)``: ``W`` (F, k_free + J) with the free atoms first, ``H`` (k_free + J, T).
    """
    if k_free + (0 if W_fixed is None else W_fixed.shape[1]) < 1:
        raise UsageError("kl_nmf needs at least one atom (k_free or W_fixed)")
    fixed = V.new_zeros(V.shape[0], 0) if W_fixed is None else W_fixed.to(V)  # (F, J); the same init either way
    r = nmf(V, k=k_free, divergence="kl", max_iter=n_iter, tol=0.0, seed=seed, eps=NMF_EPS, W_fixed=fixed)
    return r.W, r.H


def magnitude(audio: np.ndarray | torch.Tensor, stft_opts: STFTOptions = STFTOptions()) -> torch.Tensor:
    """``|X|`` (F, T) float32 of a mono signal with the separation STFT."""
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    return stft(x, n_fft=stft_opts.n_fft, hop=stft_opts.hop, window=stft_opts.window).abs()


def _subsample(frames: torch.Tensor, max_frames: int) -> torch.Tensor:
    """At most ``max_frames`` columns of ``frames`` (F, T), evenly spaced (deterministic)."""
    if frames.shape[1] <= max_frames:
        return frames
    idx = torch.linspace(0, frames.shape[1] - 1, max_frames).round().long()
    return frames[:, idx]


def quiet_frames(spec: torch.Tensor, quantile: float = BACKGROUND_QUANTILE) -> torch.Tensor:
    """The frames of ``spec`` (F, T) whose energy is among the lowest ``quantile`` fraction (F, T')."""
    energy = (spec**2).sum(dim=0)  # (T,)
    n = max(1, int(round(quantile * spec.shape[1])))
    return spec[:, torch.argsort(energy)[:n].sort().values]


# --------------------------------------------------------------------------- supervised NMF


@dataclass(frozen=True)
class Dictionaries:
    """Supervised-NMF dictionaries; every matrix ``(F, atoms)`` with columns summing to one."""

    classes: dict[str, np.ndarray]  # class name -> (F, CLASS_ATOMS)
    background: np.ndarray  # (F, BACKGROUND_ATOMS)
    n_fft: int
    hop: int

    def tensors(self) -> dict[str, torch.Tensor]:
        """The matrices as named tensors (``background``, ``class.<name>``), for safetensors."""
        out = {"background": torch.as_tensor(np.ascontiguousarray(self.background, np.float32))}
        out.update({f"{CLASS_PREFIX}{k}": torch.as_tensor(np.ascontiguousarray(v, np.float32))
                    for k, v in self.classes.items()})
        return out

    def meta(self) -> dict[str, int]:
        """What ``config.json`` says of them (the STFT they were learnt with and their sizes)."""
        any_class = next(iter(self.classes.values()))
        return {"n_fft": self.n_fft, "hop": self.hop, "class_atoms": int(any_class.shape[1]),
                "background_atoms": int(self.background.shape[1])}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, int],
                     labels: Sequence[str], *, source: str) -> Dictionaries:
        """Rebuild from :meth:`tensors` and :meth:`meta`, strictly: one dictionary per label, the
        background, nothing else, every shape as ``meta`` says.

        Raises:
            CheckpointError: a tensor is missing, unexpected, mis-shaped, not float32, or holds a
                NaN, an infinity or a negative value (named in the message).
        """
        n_f = int(meta["n_fft"]) // 2 + 1
        want = {"background": (n_f, int(meta["background_atoms"]))}
        want.update({f"{CLASS_PREFIX}{c}": (n_f, int(meta["class_atoms"])) for c in labels})
        missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
        if missing or extra:
            raise CheckpointError(f"{source}: dictionary tensors do not match the labels "
                                  f"(missing {missing}, unexpected {extra}); retrain them with "
                                  "`avscene train-dictionaries`")
        for name, shape in want.items():
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise CheckpointError(f"{source}: {name} has shape {tuple(t.shape)}, config.json says {shape}")
            if t.dtype != torch.float32:  # what tensors() writes; another dtype is not a file of ours
                raise CheckpointError(f"{source}: {name} is {str(t.dtype).removeprefix('torch.')}, not float32; "
                                      "retrain the dictionaries with `avscene train-dictionaries`")
            if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):  # NMF atoms: finite, non-negative
                raise CheckpointError(f"{source}: {name} holds NaN, infinite or negative values; retrain the "
                                      "dictionaries with `avscene train-dictionaries`")
        return cls(classes={c: tensors[f"{CLASS_PREFIX}{c}"].float().numpy() for c in labels},
                   background=tensors["background"].float().numpy(), n_fft=int(meta["n_fft"]),
                   hop=int(meta["hop"]))


def learn_dictionaries(
    audio_by_class: Mapping[str, Sequence[np.ndarray]],
    *,
    classes: Sequence[str] | None = None,
    class_atoms: int = CLASS_ATOMS,
    background_atoms: int = BACKGROUND_ATOMS,
    stft_opts: STFTOptions = STFTOptions(),
    seed: int = 0,
) -> Dictionaries:
    """Learn the background dictionary and one dictionary per class (see the module docstring).

    Args:
        audio_by_class: class name -> mono 16-kHz training signals of that class
            alone (single-label clips). All of them feed the background dictionary.
        classes: the classes to learn dictionaries for (default: all keys).
        class_atoms: atoms per class dictionary.
        background_atoms: atoms of the background dictionary.
        stft_opts: the separation STFT.
        seed: NMF initialisation seed.
    """
    specs = {c: [magnitude(a, stft_opts) for a in clips] for c, clips in audio_by_class.items()}
    quiet = [quiet_frames(s) for clips in specs.values() for s in clips]
    if not quiet:
        raise UsageError("no training audio to learn dictionaries from")
    background, _ = kl_nmf(_subsample(torch.cat(quiet, dim=1), MAX_FRAMES), k_free=background_atoms,
                           n_iter=LEARN_ITER, seed=seed)
    out = {}
    for c in classes or list(specs):
        if not specs.get(c):
            raise UsageError(f"no training clip of class {c!r} alone: cannot learn its dictionary")
        V = _subsample(torch.cat(specs[c], dim=1), MAX_FRAMES)  # (F, T')
        W, _ = kl_nmf(V, k_free=class_atoms, W_fixed=background, n_iter=LEARN_ITER, seed=seed)
        out[c] = W[:, :class_atoms].numpy()
    return Dictionaries(classes=out, background=background.numpy(), n_fft=stft_opts.n_fft, hop=stft_opts.hop)


def dictionary_mask(magnitude: torch.Tensor, dicts: Dictionaries, label: str, *,
                    n_iter: int = FIT_ITER) -> torch.Tensor:
    """The supervised-NMF mask of ``label`` for a magnitude ``|X|`` (F, T) on the dictionaries' STFT.

    The activations are fitted with ``W = [W_label, W_background]`` fixed; the mask is the class
    part of the model, ``W_c H_c / (W H + eps)``, in [0, 1].

    Raises:
        UsageError: no dictionary for ``label``.
    """
    if label not in dicts.classes:
        raise UsageError(f"no dictionary for class {label!r}; learnt: {sorted(dicts.classes)}")
    W = torch.as_tensor(np.concatenate([dicts.classes[label], dicts.background], axis=1), dtype=torch.float32)
    W, H = kl_nmf(magnitude.float().cpu(), k_free=0, W_fixed=W, n_iter=n_iter)
    k = dicts.classes[label].shape[1]
    return (W[:, :k] @ H[:k]) / (W @ H + MASK_EPS)  # (F, T)


def separate_with_dictionaries(mixture: np.ndarray, dicts: Dictionaries, label: str, *,
                               n_iter: int = FIT_ITER) -> tuple[np.ndarray, np.ndarray]:
    """Source and residual of ``label`` in ``mixture`` (N,) by supervised NMF: the
    :func:`dictionary_mask` applied to the complex STFT; the residual is ``mixture - source``,
    so the two add up to the mixture exactly.

    Returns:
        ``(source, residual)``, each ``(N,)`` float32.

    Raises:
        UsageError: no dictionary for ``label`` (from :func:`dictionary_mask`).
    """
    return separate_with_mask(mixture, lambda mag: dictionary_mask(mag, dicts, label, n_iter=n_iter),
                              stft_opts=STFTOptions(n_fft=dicts.n_fft, hop=dicts.hop))


def supervised_nmf(mixture: np.ndarray, dicts: Dictionaries, label: str, *, n_iter: int = FIT_ITER) -> np.ndarray:
    """The source of ``label`` in ``mixture`` (N,): :func:`separate_with_dictionaries`' first output."""
    return separate_with_dictionaries(mixture, dicts, label, n_iter=n_iter)[0]


__all__ = ["BACKGROUND_ATOMS", "CLASS_ATOMS", "Dictionaries", "dictionary_mask", "kl_nmf", "learn_dictionaries", "magnitude",
           "quiet_frames", "separate_with_dictionaries", "supervised_nmf"]
