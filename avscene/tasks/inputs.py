"""Input discovery: the files a command is given, folders expanded to their media files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from avscene.errors import UsageError

MEDIA_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .flv .wmv .3gp .ogv "
    ".wav .flac .mp3 .m4a .aac .ogg .opus".split()
)


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories recursed into (media suffixes only), sorted, de-duplicated.

    A path that does not exist stays in the list: it becomes a ``FailedInput``
    when processed, so it is reported with the others.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                raise UsageError(f"{p}: directory contains no media files ({', '.join(sorted(MEDIA_SUFFIXES)[:6])}, …)")
            out.extend(found)
        else:
            out.append(p)
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def relative_folder(file: Path, roots: Sequence[str | Path]) -> str:
    """The folder of ``file`` relative to the first directory argument (of ``roots``) it lies under,
    as ``/``-separated text: ``"cam1"`` for ``videos/cam1/0001.mp4`` under ``videos``; ``"."`` for
    a file directly in it or given by itself (so ``'{relpath}/{name}.mp4'`` stays relative). The
    parts come from the file system listing, so they never climb out of the root (no ``..``)."""
    for root in roots:
        rel = os.path.relpath(file.parent, root)
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            return Path(rel).as_posix()
    return "."


__all__ = ["MEDIA_SUFFIXES", "expand_inputs", "relative_folder"]
