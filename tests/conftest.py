"""Shared fixtures: one torch thread, a seeded rng, a tiny checkpoint and a few small clips.

Test modules may define their own ``rng`` (or other) fixtures; a module's own
definition takes precedence over the one here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY_LABELS = ("violin", "drum", "car")  # classes of the session's tiny checkpoint
CLIP_SECONDS = 2.0  # every generated clip is this long
CLIP_SIZE = (64, 48)  # (width, height) of the generated videos
CLIP_FPS = 8


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests run many tiny ops: intra-op threads only add synchronisation (10x slower on a loaded box)."""
    import torch

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


@pytest.fixture
def spied(monkeypatch) -> list[str]:
    """Every noise-bank family's generator wrapped to record its name when called."""
    import dataclasses

    from avscene.dsp import noise as bank

    calls: list[str] = []

    def spy(name, fn):
        def generate(n, sr, rng):
            calls.append(name)
            return fn(n, sr, rng)
        return generate

    for name, fam in list(bank.FAMILIES.items()):
        monkeypatch.setitem(bank.FAMILIES, name, dataclasses.replace(fam, generator=spy(name, fam.generator)))
    return calls


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """An empty folder with mode 0o500 (restored afterwards); skips where permissions are not enforced."""
    import os

    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        pytest.skip("root (or this platform) writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator for each test."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny ``async`` checkpoint folder with ``TINY_LABELS``."""
    from avscene.testing.models import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny_model") / "tiny", labels=TINY_LABELS, seed=0)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small test media: ``av`` (mp4, video + 440 Hz tone), ``video_only`` (mp4), ``audio_only`` (wav).

    Files are shared by the whole session: copy them before changing anything next to them.
    """
    from avscene.testing.media import write_audio, write_video

    root = tmp_path_factory.mktemp("clips")
    common = {"duration": CLIP_SECONDS, "fps": CLIP_FPS, "size": CLIP_SIZE}
    return {
        "av": write_video(root / "av.mp4", box=(16, 8, 48, 40), box_color=(230, 20, 20), **common),
        "video_only": write_video(root / "video_only.mp4", audio_codec=None, **common),
        "audio_only": write_audio(root / "audio_only.wav", duration=CLIP_SECONDS, freq=1000.0),
    }

