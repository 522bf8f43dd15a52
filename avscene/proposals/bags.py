"""The audio bag a model takes: TSPs, NCPs or both (``PreprocessConfig.audio_proposals``).

* ``tsp``: temporal segment proposals, 0.96-s log-mel windows with a 0.48-s hop;
* ``ncp``: NMF component proposals: the mixture is decomposed into
  ``ncp_components`` NMF components, each turned into a track by soft masking and
  cut into non-overlapping 0.96-s windows (``avscene.proposals.nmf``) — K x P
  proposals, the paper's Sec. III-D1 representation;
* ``tsp+ncp``: both bags, concatenated.

Training, inference and separation all call :func:`audio_bag`, so a model always
sees the proposals it was trained on; :class:`AudioBagStream` gives the same bag of
a waveform that arrives in pieces (inference on long files).
"""

from __future__ import annotations

import numpy as np

from avscene.config import AUDIO_PROPOSAL_TYPES, PreprocessConfig
from avscene.errors import ConfigError
from avscene.proposals.audio import AudioProposals, TSPStream, audio_proposals
NCP_SEED = 0  # NMF initialisation seed of NCP bags: the same clip always gives the same bag
# A stream fits one NMF per block of 24 NCP windows (23.04 s); a remainder up to half a block
# joins the last block (no NMF of a sliver), so blocks hold 0.5 to 1.5 blocks. One NMF of 1.5 blocks:
# 20 components x 513 bins x 2160 frames complex64 masked spectra = 177 MB.
NCP_BLOCK_WINDOWS = 24


def ncp_proposals(audio: np.ndarray, *, cfg: PreprocessConfig, first_window: int = 0) -> AudioProposals:
    """NMF component proposals of a mono waveform as one flat bag. (N,) → (K·P, 96, 64), (K·P, 2).

    ``first_window``: index of the waveform's first 0.96-s window in a longer signal (its times).
    """
    from avscene.proposals.nmf import NMFOptions, ncp_patches, nmf_tracks

    tracks = nmf_tracks(audio, opts=NMFOptions(k=cfg.ncp_components, seed=NCP_SEED)).tracks  # (K, N)
    patches, times = ncp_patches(tracks, cfg=cfg)  # (K, P, 96, 64), (P, 2)
    K, P = patches.shape[:2]
    flat = patches.reshape(K * P, *patches.shape[2:]).float().cpu().numpy()  # (K*P, 96, 64), component-major
    if first_window:
        starts = np.arange(first_window, first_window + P, dtype=np.float64) * cfg.patch_seconds
        times = np.stack([starts, starts + cfg.patch_seconds], axis=1)  # (P, 2)
    return AudioProposals(patches=flat, times=np.tile(np.asarray(times, np.float64), (K, 1)),  # (K*P, 2)
                          component=np.repeat(np.arange(K), P))


def _check_kind(kind: str) -> None:
    if kind not in AUDIO_PROPOSAL_TYPES:
        raise ConfigError(f"audio_proposals must be one of {AUDIO_PROPOSAL_TYPES}, got {kind!r}")


def audio_bag(audio: np.ndarray, *, cfg: PreprocessConfig) -> AudioProposals:
    """The audio proposals named by ``cfg.audio_proposals`` for one waveform."""
    kind = cfg.audio_proposals
    _check_kind(kind)
    if kind == "tsp":
        return audio_proposals(audio, cfg=cfg)
    ncp = ncp_proposals(audio, cfg=cfg)
    if kind == "ncp":
        return ncp
    return _mixed(audio_proposals(audio, cfg=cfg), ncp)


def _mixed(tsp: AudioProposals | None, ncp: AudioProposals | None) -> AudioProposals | None:
    """A ``tsp+ncp`` bag: the TSPs (component -1), then the NCPs."""
    parts = [p for p in (tsp, ncp) if p is not None]
    if not parts:
        return None
    comps = [np.full(len(p.times), -1) if p.component is None else p.component for p in parts]
    return AudioProposals(patches=np.concatenate([p.patches for p in parts]),
                          times=np.concatenate([p.times for p in parts]), component=np.concatenate(comps))


def _concat(bags: list[AudioProposals]) -> AudioProposals:
    return AudioProposals(patches=np.concatenate([b.patches for b in bags]),
                          times=np.concatenate([b.times for b in bags]),
                          component=np.concatenate([b.component for b in bags]))


class AudioBagStream:
    """:func:`audio_bag` of a waveform that arrives in consecutive pieces.

    TSPs come out as soon as their samples are in (:class:`~avscene.proposals.audio.TSPStream`,
    exactly the whole-waveform TSPs). NCPs need an NMF of a stretch of signal: they are
    computed per block of ``NCP_BLOCK_WINDOWS`` 0.96-s windows (the remainder, if over half a
    block, is a last block of its own, else joins the one before), so a waveform up to 1.5
    blocks (34.56 s) gives exactly the whole-waveform NCPs and a longer one a bag whose NMF
    is fitted block by block. Proposals come in time order per kind (TSPs and NCPs
    interleave on long inputs); the order of a bag changes no score.
    """

    def __init__(self, *, cfg: PreprocessConfig) -> None:
        _check_kind(cfg.audio_proposals)
        self._cfg = cfg
        self._tsp = TSPStream(cfg=cfg) if cfg.audio_proposals != "ncp" else None
        self._ncp = cfg.audio_proposals != "tsp"
        self._block = NCP_BLOCK_WINDOWS * cfg.patch_frames * cfg.stft_hop  # samples per NCP block
        self._pending: list[np.ndarray] = []  # samples not yet in an NCP block
        self._n_pending = 0
        self._window = 0  # index of the first NCP window not yet produced

    def push(self, audio: np.ndarray) -> AudioProposals | None:
        """Add the next ``(n,)`` samples; the proposals they complete, or None."""
        tsp = None if self._tsp is None else self._tsp.push(audio)
        ncp = None
        if self._ncp:
            self._pending.append(np.asarray(audio, dtype=np.float32))
            self._n_pending += len(audio)
            if self._n_pending >= 2 * self._block:  # always keep at least one block back
                x = np.concatenate(self._pending)  # (n,)
                cut = (len(x) - self._block) // self._block * self._block
                ncp = self._blocks(x[:cut])
                self._pending, self._n_pending = [x[cut:]], len(x) - cut
        return self._bag(tsp, ncp)

    def finish(self) -> AudioProposals | None:
        """The remaining proposals; None if no sample was pushed."""
        tsp = None if self._tsp is None else self._tsp.finish()
        ncp = None
        if self._ncp and self._n_pending:
            x = np.concatenate(self._pending)  # (n,), one to two blocks (or a whole short signal)
            cut = self._block if len(x) > self._block * 3 // 2 else 0
            head = self._blocks(x[:cut]) if cut else None
            tail = ncp_proposals(x[cut:], cfg=self._cfg, first_window=self._window)
            ncp = tail if head is None else _concat([head, tail])
            self._pending, self._n_pending = [], 0
        return self._bag(tsp, ncp)

    def _blocks(self, x: np.ndarray) -> AudioProposals:
        """NCPs of whole blocks, one NMF per block. ``len(x)`` is a multiple of the block."""
        bags = []
        for start in range(0, len(x), self._block):
            bags.append(ncp_proposals(x[start:start + self._block], cfg=self._cfg, first_window=self._window))
            self._window += NCP_BLOCK_WINDOWS
        return _concat(bags)

    def _bag(self, tsp: AudioProposals | None, ncp: AudioProposals | None) -> AudioProposals | None:
        if self._cfg.audio_proposals == "tsp":
            return tsp
        if self._cfg.audio_proposals == "ncp":
            return ncp
        return _mixed(tsp, ncp)
