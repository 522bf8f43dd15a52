"""Reference methods for the separation evaluation (``avscene evaluate-separation``).

Each maps a mono mixture at 16 kHz to an estimate of one source. All work on the
separation STFT (1024 / 256, :mod:`avscene.dsp.stft`) with KL-NMF of the
magnitude and resynthesise with Wiener-like masks of the complex mixture STFT
(:func:`avscene.separation.ranking.reconstruct`), as avscene itself does.

* **Supervised NMF** (Smaragdis, Raj & Shashanka 2007; Schmidt & Olsson 2006):
  ``CLASS_ATOMS`` = 16 spectral atoms per class learnt from training audio, and
  ``BACKGROUND_ATOMS`` = 16 background atoms. Training clips are only weakly
  labelled: a clip of a class also holds background ambience, and the class is
  heard only part of the time (2–8 s of 10 s in avbench). Hence:

  1. background dictionary: KL-NMF of the quietest ``BACKGROUND_QUANTILE``
     (20 %) of the frames of every training clip used (per clip, by frame
     energy): with events active at most 8 s of 10, those are mostly
     background only;
  2. class dictionary: KL-NMF of the frames of the class's single-label clips
     with ``W = [W_class, W_background]`` and the background part fixed, so the
     class atoms model only what the background atoms cannot;
  3. test: the mixture's activations are fitted with ``W = [W_class,
     W_background]`` fixed, and the source is the class part of the mask,
     ``W_c H_c / W H``.

* **NMF Mel-clustering** (Spiertz & Gnann, "Source-filter based clustering for
  monaural blind source separation", DAFx 2009): the NMF components of the
  mixture (the same NMF avscene ranks) are clustered into two groups by k-means
  (``scipy.cluster.vq.kmeans2``, fixed seed) on the MFCCs of their spectral
  bases ``w_k``. The method is blind: Spiertz & Gnann resolve which cluster is
  which source with the references when scoring. Two rules are reported:
  ``"activity"`` (reference-free): the cluster whose components are the more
  intermittent, i.e. with the larger energy-weighted mean coefficient of
  variation of their activations ``h_k`` over time (a played instrument comes
  and goes with its notes, a background scene is steady); and ``"best"`` (the
  cluster with the higher SDR against the reference, as in their evaluation:
  an upper bound of the clustering, chosen by the caller). The activity rule
  was chosen among four reference-free rules on every other mixture of avbench
  val/sep (it picked the better cluster in 28 of those 30; the cluster with
  more energy in 23, with lower spectral flatness in 4, with lower
  envelope-normalised flatness in 7), so it flatters this baseline there.

* **Mixture**: the mixture itself (:func:`mixture_estimate`).

* **Ideal ratio mask** (the oracle of the two-source evaluation, :func:`irm_estimate`):
  ``|S| / (|S| + |R|)`` on the separation STFT of the mixture, ``S`` the true source and
  ``R = x - S`` the true rest (Wang's IRM with exponent 1): an upper bound of every
  method that masks this STFT, as avscene's do.

* **Oracle**: component ``k`` of the same NMF goes to the source iff its
  masked track correlates more with the true source than with the true rest,
  ``<t_k, s> > <t_k, x - s>``; binary weights, the same resynthesis. It uses
  the references: an upper bound for choosing components of that NMF.
"""

from __future__ import annotations


import numpy as np
import torch

from avscene.dsp.mel import mel_filterbank
from avscene.dsp.stft import SAMPLE_RATE, STFTOptions, istft, stft
from avscene.proposals.nmf import NMFTracks
from avscene.separation.ranking import reconstruct

MFCC_BANDS = 40  # mel bands of the MFCCs of the bases
MFCC_COEFFS = 13  # cepstral coefficients kept, c1..c13 (c0, the level, is dropped)
MEL_FMIN, MEL_FMAX = 20.0, 8000.0  # Hz, the band the MFCCs look at
VARIABILITY_FLOOR = 1e-12  # floor of the mean activation in the coefficient of variation


# --------------------------------------------------------------------------- NMF Mel-clustering


def basis_mfcc(W: np.ndarray, *, sample_rate: int = SAMPLE_RATE, n_fft: int = 1024) -> np.ndarray:
    """MFCCs c1..c13 of each spectral basis: ``(F, K)`` → ``(K, 13)``."""
    from scipy.fft import dct

    fb = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=MFCC_BANDS, fmin=MEL_FMIN,
                        fmax=min(MEL_FMAX, sample_rate / 2))  # (F, M)
    mel = np.asarray(W, dtype=np.float64).T @ fb  # (K, M)
    logmel = np.log(mel + 1e-6 * mel.max(axis=1, keepdims=True) + 1e-30)  # 60-dB floor per basis
    return dct(logmel, type=2, norm="ortho", axis=1)[:, 1:MFCC_COEFFS + 1]  # (K, 13)


def activation_variability(H: np.ndarray) -> np.ndarray:
    """Coefficient of variation over time of each activation: (K, T) → (K,), ``std / mean``."""
    h = np.asarray(H, dtype=np.float64)
    return h.std(axis=1) / np.maximum(h.mean(axis=1), VARIABILITY_FLOOR)


def mel_clusters(W: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """k-means (k = 2, k-means++ init, fixed seed) of the bases' MFCCs: (F, K) → (K,) labels in {0, 1}."""
    from scipy.cluster.vq import ClusterError, kmeans2

    feats = basis_mfcc(W)
    if feats.shape[0] < 2:
        return np.zeros(feats.shape[0], dtype=int)
    try:
        _, labels = kmeans2(feats, 2, minit="++", seed=seed, missing="raise")
    except ClusterError:  # an empty cluster (e.g. identical bases): everything in one group
        return np.zeros(feats.shape[0], dtype=int)
    return labels


def mel_clustering(dec: NMFTracks, *, seed: int = 0, stft_opts: STFTOptions = STFTOptions(),
                   ) -> tuple[np.ndarray, int]:
    """Both cluster sources of a decomposition and the index of the more intermittent one.

    Returns:
        ``(sources, active)``: ``sources`` (2, N) float32, cluster ``c``'s
        Wiener-like resynthesis; ``active`` the cluster with the larger
        energy-weighted mean :func:`activation_variability` (the activity rule).
    """
    W, H = dec.W.cpu(), dec.H.cpu()
    labels = mel_clusters(W.numpy(), seed=seed)
    energy = H.double().sum(dim=1).numpy()  # (K,): columns of W sum to one
    variability = activation_variability(H.numpy())  # (K,)
    sources, activity = [], []
    for c in (0, 1):
        member = labels == c
        src, _ = reconstruct(W, H, dec.X.cpu(), torch.as_tensor(member, dtype=W.dtype),
                             length=dec.tracks.shape[1], stft_opts=stft_opts)
        sources.append(src.numpy())
        e = energy[member]
        activity.append(float((variability[member] * e).sum() / e.sum()) if e.sum() > 0 else -np.inf)
    return np.stack(sources).astype(np.float32), int(np.argmax(activity))


# --------------------------------------------------------------------------- mixture, oracle


def mixture_estimate(mixture: np.ndarray) -> np.ndarray:
    """The trivial estimate: the mixture itself."""
    return np.asarray(mixture, dtype=np.float32)


def oracle_weights(tracks: torch.Tensor | np.ndarray, reference: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """Binary weights: 1 for components with ``<t_k, s> > <t_k, x - s>``. (K, N) → (K,)."""
    t = np.asarray(torch.as_tensor(tracks).cpu().double())  # (K, N)
    s = np.asarray(reference, dtype=np.float64)
    rest = np.asarray(mixture, dtype=np.float64) - s
    return (t @ s > t @ rest).astype(np.float64)


def oracle_estimate(dec: NMFTracks, reference: np.ndarray, mixture: np.ndarray, *,
                    stft_opts: STFTOptions = STFTOptions()) -> np.ndarray:
    """The oracle's source: the components :func:`oracle_weights` picks, resynthesised. (N,) float32."""
    w = torch.as_tensor(oracle_weights(dec.tracks, reference, mixture), dtype=dec.W.dtype, device=dec.W.device)
    src, _ = reconstruct(dec.W, dec.H, dec.X, w, length=dec.tracks.shape[1], stft_opts=stft_opts)
    return src.cpu().numpy().astype(np.float32)


def irm_estimate(mixture: np.ndarray, reference: np.ndarray, *, stft_opts: STFTOptions = STFTOptions()) -> np.ndarray:
    """The ideal ratio mask's source: ``istft(|S| / (|S| + |R|) ⊙ X)``, ``R = x - s``. (N,) float32."""
    so = stft_opts
    x = torch.as_tensor(np.asarray(mixture, dtype=np.float64))
    s = torch.as_tensor(np.asarray(reference, dtype=np.float64))
    X, S, R = (stft(v, n_fft=so.n_fft, hop=so.hop, window=so.window) for v in (x, s, x - s))
    mask = S.abs() / (S.abs() + R.abs()).clamp_min(1e-12)
    out = istft(mask * X, length=len(x), n_fft=so.n_fft, hop=so.hop, window=so.window)
    return out.cpu().numpy().astype(np.float32)
