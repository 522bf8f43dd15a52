"""Learn a checkpoint's supervised-NMF dictionaries from weakly labelled training clips.

``avscene train-dictionaries MODEL labels.csv`` reads at most ``clips_per_class``
single-label clips of each class (their labels are video-level: the class is
heard somewhere in the clip, over its background), learns the dictionaries
(:func:`avscene.separation.dictionary.learn_dictionaries`) and stores them in the
checkpoint (:func:`avscene.checkpoint.parts.save_dictionaries`), where ``avscene separate
--method dictionary`` and ``avscene evaluate-separation`` find them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from avscene.separation.dictionary import Dictionaries, learn_dictionaries
from avscene.errors import UsageError

CLIPS_PER_CLASS = 16  # single-label training clips per class (every one also feeds the background)


def single_label_clips(manifest: str | Path) -> dict[str, list[Path]]:
    """Class -> clips of a training ``labels.csv`` labelled with that class alone (file order)."""
    from avscene.train.data import read_manifest

    out: dict[str, list[Path]] = {}
    for ex in read_manifest(manifest):
        if len(ex.labels) == 1:
            out.setdefault(ex.labels[0], []).append(ex.path)
    return out


def learn_from_manifest(manifest: str | Path, classes: Sequence[str], *, clips_per_class: int = CLIPS_PER_CLASS,
                        progress: Callable[[int, int], None] | None = None) -> Dictionaries:
    """Dictionaries of ``classes`` from the single-label clips of ``manifest``.

    Raises:
        UsageError: the manifest is missing, or a class has no single-label clip.
    """
    from avscene.io.decode import read_audio

    if not Path(manifest).is_file():
        raise UsageError(f"training manifest {manifest} not found")
    clips = {c: ps[:clips_per_class] for c, ps in single_label_clips(manifest).items()}
    lacking = sorted(set(classes) - set(clips))
    if lacking:
        raise UsageError(f"{manifest} has no clip labelled with {lacking} alone: cannot learn their dictionaries")
    total, done, audio = sum(map(len, clips.values())), 0, {}
    for c, paths in clips.items():
        audio[c] = []
        for p in paths:
            audio[c].append(read_audio(p))
            done += 1
            if progress:
                progress(done, total)
    return learn_dictionaries(audio, classes=list(classes))


def train_dictionaries(model_folder: str | Path, manifest: str | Path, *, clips_per_class: int = CLIPS_PER_CLASS,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """Learn dictionaries for every label of the checkpoint in ``model_folder`` and store them there."""
    from avscene.checkpoint.format import read_config
    from avscene.checkpoint.parts import save_dictionaries

    labels = read_config(model_folder)["labels"]
    dicts = learn_from_manifest(manifest, labels, clips_per_class=clips_per_class, progress=progress)
    return save_dictionaries(model_folder, dicts)


__all__ = ["CLIPS_PER_CLASS", "learn_from_manifest", "single_label_clips", "train_dictionaries"]
