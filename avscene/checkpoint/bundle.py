"""The bundled model's folder (``models/avscene-av-small``) from a training run: its weights and
``config.json`` copied (separation parts kept when asked), checked by loading it strictly, and its
card written from the run's evaluation files (:func:`avscene.checkpoint.card.bundled_card`).
``scripts/model_card.py`` is the command line of this module and of the card's ``update_*``
functions; ``scripts/train_bundled.sh`` runs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from avscene.checkpoint.card import RECIPE_NOTE, bundled_card, earlier_table, fine_tuned_card
from avscene.checkpoint.format import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, read_config, write_config
from avscene.checkpoint.load import load_pretrained


def _separation_entry(folder: Path) -> dict | None:
    """The ``separation`` entry of ``folder``'s ``config.json`` (None: no entry, or no file yet)."""
    return read_config(folder).get("separation") if (folder / CONFIG_NAME).is_file() else None


def _copy_classifier(run: Path, folder: Path, *, keep_separation: bool) -> tuple[dict, bool]:
    """Copy ``run``'s weights and ``config.json`` into ``folder``; with ``keep_separation``, the
    ``separation`` entry of ``folder``'s old config (and so the files it declares) is kept and the
    folder is loaded strictly to check that they still fit. Returns the new config and whether a
    separation entry was kept."""
    kept = _separation_entry(folder) if keep_separation else None
    cfg = read_config(run)
    shutil.copyfile(run / WEIGHTS_NAME, folder / WEIGHTS_NAME)
    if kept:
        cfg["separation"] = kept
    write_config(folder, cfg)
    load_pretrained(str(folder), offline=True)  # weights, config and kept parts load strictly together
    return cfg, bool(kept)


def write_bundled(runs: Path, best: str, out: Path, *, sep: Path | None = None, sep_shift: Path | None = None,
                  keep_separation: bool = False, keep_earlier_table: bool = False, base: Path | None = None,
                  processes: int | None = None) -> None:
    """Make ``out`` the bundled model from the run ``runs/best``: its classifier (separation kept with
    ``keep_separation``) and a new card (:func:`~avscene.checkpoint.card.bundled_card`; with
    ``keep_earlier_table``, the old card's val-only variant table carried over)."""
    out.mkdir(parents=True, exist_ok=True)
    earlier = ""
    if keep_earlier_table and (out / CARD_NAME).is_file():
        earlier = earlier_table(out / CARD_NAME)
    cfg, kept = _copy_classifier(runs / best, out, keep_separation=keep_separation)
    size_mb = (out / WEIGHTS_NAME).stat().st_size / 1e6
    processes = processes or cfg.get("training", {}).get("processes", 1)
    card = bundled_card(runs, best, cfg, size_mb=size_mb, processes=processes, base=base, sep=sep,
                        sep_shift=sep_shift, kept_separation=kept, earlier=earlier)
    (out / CARD_NAME).write_text(card, encoding="utf-8")


def replace_classifier(folder: Path, run: Path, note: str = RECIPE_NOTE) -> None:
    """Replace the classifier of the checkpoint in ``folder`` by a run fine-tuned from it: its
    ``config.json`` (the separation entry kept, with the files it declares) and weights; the card's
    recipe gains the run's command (``note``: what the fine-tuning changed) and its size and
    configuration lines are the new weights'. The other sections are rewritten by the card's
    ``update_*`` functions."""
    cfg, _ = _copy_classifier(run, folder, keep_separation=True)
    size_mb = (folder / WEIGHTS_NAME).stat().st_size / 1e6
    card = (folder / CARD_NAME).read_text(encoding="utf-8")
    (folder / CARD_NAME).write_text(fine_tuned_card(card, cfg, run=run.name, note=note, size_mb=size_mb),
                                    encoding="utf-8")
