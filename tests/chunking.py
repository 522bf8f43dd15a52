"""The chunks and cross-fade weights of a whole signal, through the streaming API the library uses
(``ready_chunks`` with ``final=True``; ``chunk_weight`` as ``StreamingSeparation`` applies it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avscene.dsp.overlap import chunk_weight, ready_chunks


def chunk_bounds(n: int, *, size: int, overlap: int) -> list[tuple[int, int]]:
    """The chunks of a whole signal of ``n`` samples: the stream's, when it is known at once."""
    return ready_chunks(0, n, size=size, overlap=overlap, final=True)


def chunk_weights(bounds: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Each chunk's overlap-add weight: faded in over what it shares with the previous chunk, out
    over what it shares with the next."""
    out = []
    for i, (a, b) in enumerate(bounds):
        n_in = bounds[i - 1][1] - a if i > 0 else 0
        n_out = b - bounds[i + 1][0] if i < len(bounds) - 1 else 0
        out.append(chunk_weight(b - a, fade_in_len=n_in, fade_out_len=n_out))
    return out
