"""The model card (``README.md``) of a checkpoint folder, in Hub format: one template.

:func:`card_text` is the card :func:`avscene.checkpoint.load.save_pretrained` writes for any
model (YAML front matter, labels, configuration, training record, usage, citation);
:func:`bundled_card` is the bundled model's (``models/avscene-av-small``), written by
:mod:`avscene.checkpoint.bundle` from a training run and its evaluation files, and the
``update_*`` functions rewrite one of its sections from new evaluation files (variant table,
val / val_shift, noise stress, separation): every figure is copied from a file, never typed in.
Both share the front matter (:func:`front_matter`) and the value formats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avscene.checkpoint.format import read_config
from avscene.errors import UsageError

if TYPE_CHECKING:
    from avscene.config import PreprocessConfig
    from avscene.nn.model import ModelConfig

CARD_TAGS = ("avscene", "audio-visual", "audio-classification", "video-classification",
             "multiple-instance-learning", "weakly-supervised")
_PAPER = (
    "S. Parekh, S. Essid, A. Ozerov, N. Q. K. Duong, P. Pérez, G. Richard, "
    '"Weakly Supervised Representation Learning for Audio-Visual Scene Analysis", '
    "IEEE/ACM Transactions on Audio, Speech, and Language Processing, 2019"
)

def front_matter(datasets: Sequence[str] = ()) -> str:
    """The card's YAML front matter (the Hub reads it): library, tags and the datasets named."""
    lines = ["---", "library_name: avscene", "tags:", *[f"- {t}" for t in CARD_TAGS]]
    if datasets:
        lines += ["datasets:", *[f"- {d}" for d in datasets]]
    return "\n".join([*lines, "---"])


def card_text(
    config: ModelConfig,
    *,
    labels: Sequence[str],
    preprocess: PreprocessConfig,
    training: dict | None = None,
    title: str | None = None,
    description: str | None = None,
) -> str:
    """A model card (README.md) in Hub format: YAML front matter, then Markdown.

    Args:
        config, labels, preprocess: listed in the card (labels in output order).
        training: optional record: ``"command"`` becomes a code block, ``"metrics"``
            (a mapping) a table, other keys a list.
        title: heading, e.g. the repo name.
        description: paragraph under the heading (default: a one-line summary).
    """
    model = config.to_dict()
    lines = [front_matter(), ""]
    lines += [f"# {title or 'avscene model'}", ""]
    lines += [description or (
        f"An avscene audio-visual scene analysis model (variant `{model.get('variant')}`), "
        f"weakly supervised with {len(labels)} video-level labels, after {_PAPER}."), ""]
    lines += ["## Labels", "", *[f"{i}. {label}" for i, label in enumerate(labels)], ""]
    lines += ["## Model", "", "| parameter | value |", "|---|---|"]
    lines += [f"| `{k}` | `{_fmt(v)}` |" for k, v in model.items()] + [""]
    lines += ["## Preprocessing", "", "| parameter | value |", "|---|---|"]
    lines += [f"| `{k}` | `{_fmt(v)}` |" for k, v in preprocess.to_dict().items()] + [""]
    if training:
        lines += ["## Training", ""] + _training_lines(training)
    lines += [
        "## Usage", "", "```python", "import avscene", "",
        f'loaded = avscene.load_model("{title or "path/to/model"}")', "```", "",
        "## Citation", "", _PAPER + ".", "",
    ]
    return "\n".join(lines)


def _training_lines(training: dict) -> list[str]:
    lines: list[str] = []
    if "command" in training:
        lines += ["```bash", str(training["command"]), "```", ""]
    metrics = training.get("metrics")
    if isinstance(metrics, dict) and metrics:
        lines += ["| metric | value |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in metrics.items()], ""]
    rest = {k: v for k, v in training.items() if k not in ("command", "metrics")}
    if rest:
        lines += [f"- {k}: {_fmt(v)}" for k, v in rest.items()] + [""]
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, tuple, dict, bool)) else str(value)


# --- the bundled model's card ------------------------------------------------------------

SEP_START, SEP_END = "\n## Separation", "\n## Limitations"
SPLITS_START = "\n## val and val_shift"  # the side-by-side section ends where the next of these starts
NOISE_START = "\n## Noise stress"  # between the val / val_shift section and the separation section

VARIANT_NAMES = {"async": "AV two-stream (async)", "sync": "AV two-stream, synchronous", "audio": "audio only",
                 "visual": "visual only", "onestream": "AV one-stream (log-sum-exp)", "wsddn": "WSDDN-type"}


def _f(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _prf(e: dict | None) -> str:
    """``F1 (P / R)`` of an evaluation file's classification, or a dash."""
    if e is None:
        return "—"
    c = e["classification"]
    return f"{_f(c['micro_f1'])} ({_f(c.get('micro_precision'))} / {_f(c.get('micro_recall'))})"


def _pair(a: dict | None, b: dict | None, *keys: str) -> str:
    """``val / val_shift`` of one nested figure of two evaluation files."""
    def get(e):
        for k in keys:
            e = (e or {}).get(k)
        return e
    return f"{_f(get(a))} / {_f(get(b))}"


def variant_row(name: str, run: Path) -> str | None:
    """One run's row of the variant comparison, from its four evaluation files (val, val async
    clips, val_shift, val_shift async clips) as ``scripts/train_bundled.sh`` writes them."""
    val = _load(run / "eval_val.json")
    if val is None:
        return None
    asy, shift, shift_asy = (_load(run / f"eval_{s}.json") for s in ("val_async", "val_shift", "val_shift_async"))
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    tr = read_config(run).get("training") or {}
    # the epoch the run kept (ties in micro-F1 go to the lower validation loss)
    best = {"epoch": tr["best_epoch"]} if "best_epoch" in tr else max(log, key=lambda r: r["val_micro_f1"])
    label = f"{VARIANT_NAMES.get(val['model']['variant'], name)} (`{name}`: {tr.get('epochs')} ep.)"
    async_f1 = lambda e: _f(e["classification"]["micro_f1"]) if e else "—"  # noqa: E731
    return (f"| {label} | {_prf(val)} | {async_f1(asy)} | {_prf(shift)} | {async_f1(shift_asy)} | "
            f"{_pair(val, shift, 'sed', 'f1')} | {_pair(val, shift, 'localization', 'pointing_accuracy')} | "
            f"{best['epoch'] + 1}/{len(log)} | {sum(r['seconds'] for r in log) / 60:.0f} |")


TABLE_HEADER = "| variant | val micro-F1 (P / R) |"


def update_variants(folder: Path, runs: Path) -> None:
    """Rewrite the rows of the card's variant table: the rows of the runs in ``runs`` (one per
    run folder with evaluation files) replace any earlier row of a run of the same name; rows of
    other runs (the bundled model's own) are kept, first."""
    lines = (folder / "README.md").read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER)) + 2  # header, rule
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    new = {d.name: r for d in sorted(runs.iterdir()) if d.is_dir() and (r := variant_row(d.name, d))}
    kept = [line for line in lines[start:end] if not any(f"(`{name}`:" in line for name in new)]
    lines[start:end] = kept + [r + "\n" for r in new.values()]
    (folder / "README.md").write_text("".join(lines))


OLD_TABLE_HEADER = "| variant | micro-F1 | micro-F1 (async clips) | SED F1 | SED ER | pointing | CorLoc |"


def earlier_table(card: Path) -> str:
    """The previous card's val-only variant table (the columns before val_shift was reported),
    copied verbatim under its own heading; empty when the card has none."""
    lines = card.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(OLD_TABLE_HEADER)), None)
    if start is None:
        return ""
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return ("\nAn earlier comparison on `val/` only, from runs whose evaluation files are no longer kept "
            "(20 epochs unless named; the bundled model of that time was `async_60`), copied from the "
            "previous card:\n\n" + "\n".join(lines[start:end]) + "\n")


def _opt(key: str, value) -> str:
    """``KEY=VALUE`` of a ``--model-opt`` / ``--pre-opt`` / ``--aug-opt`` (a string as it is, the rest as JSON)."""
    return f"{key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"


def train_command(tr: dict, run: str, processes: int) -> str:
    """The ``avscene train`` command line of a run's training record (every setting that differs
    from the command's defaults, recipe included)."""
    launcher = f"torchrun --nproc_per_node={processes} -m avscene" if processes > 1 else "avscene"
    parts = [f"{launcher} train ../shared/avbench/train/labels.csv -o runs/{run} --variant {tr.get('variant')}",
             f"--preset {tr.get('preset')} --epochs {tr.get('epochs')} --batch-size {tr.get('batch_size')}",
             f"--lr {tr.get('lr')} --patience {tr.get('patience')} --seed {tr.get('seed')}"]
    if tr.get("mix_prob"):
        parts.append(f"--mix-prob {tr['mix_prob']}")
    if tr.get("aux_loss"):
        parts.append(f"--aux-loss {tr['aux_loss']}")
    parts += [f"--model-opt {_opt(k, v)}" for k, v in (tr.get("model") or {}).items()]
    parts += [f"--pre-opt {_opt(k, v)}" for k, v in (tr.get("preprocess") or {}).items()]
    parts += [f"--aug-opt {_opt(k, v)}" for k, v in (tr.get("augment_opts") or {}).items()]
    if tr.get("refine_labels"):
        parts.append("--refine-labels")
    if (tr.get("model") or {}).get("visual_refine") and tr.get("oicr_weight", 1.0) != 1.0:
        parts.append(f"--oicr-weight {tr['oicr_weight']}")
    if tr.get("visual_floor"):
        parts.append(f"--visual-floor {tr['visual_floor']}")
    if tr.get("splice_prob"):
        parts.append(f"--splice-prob {tr['splice_prob']}")
    if (tr.get("model") or {}).get("event_head") and tr.get("event_weight", 1.0) != 1.0:
        parts.append(f"--event-weight {tr['event_weight']}")
    if tr.get("select", "clean") != "clean":
        parts.append(f"--select {tr['select']}")
    if tr.get("init_model"):
        parts.append(f"--init-model {tr['init_model']}")
    return " ".join(parts + ["--device cpu"])


def separation_section(val: Path | None, shift: Path | None, config: dict | None = None) -> str:
    """The card's separation section: which method ``separate`` uses with this model (read from its
    ``config.json``) and the text reports of ``avscene evaluate-separation`` on val/sep and
    val_shift/sep, copied (a machine path in them is cut to its last part)."""
    parts = []
    for name, report in (("val/sep", val), ("val_shift/sep (recorded differently)", shift)):
        if report is not None:
            text = re.sub(r"(?:/[^/\s]+)+/([^/\s]+)", r"\1", report.read_text())
            parts.append(f"### {name}\n\n```\n{text.rstrip()}\n```\n")
    if not parts:
        return ""
    sep = (config or {}).get("separation") or {}
    methods = []
    if "mask" in sep and "dictionary" in sep:
        methods.append(f"{'the default (`auto`, recorded as `separation.default_method`, the best measured here); ' if sep.get('default_method') == 'hybrid' else ''}"
                       "`--method hybrid` (rows *avscene hybrid*): the mean of the masks of the "
                       "two methods below, each learnt from the weak labels by its own route")
    if "mask" in sep:
        net, tr = sep["mask"].get("network", {}), sep["mask"].get("training", {})
        mix = tr.get("mix", {})
        methods.append(
            f"`--method mask` (rows *avscene mask network*): a mask network "
            f"({net.get('blocks')} dilated blocks of {net.get('hidden')} channels, FiLM class conditioning) "
            f"trained by `avscene train-separator` from the video-level labels of {tr.get('manifest', 'the training manifest')} "
            f"only — mix-and-separate on 2-s anchors that the audio network of the model it was trained with finds in single-label "
            f"training clips, background-only segments of other clips added at "
            f"{mix.get('snr_background')} dB, another class's anchor with probability {mix.get('other_prob')}; "
            f"{(tr.get('first_round') or {}).get('steps', 0) + tr.get('steps', 0)} steps of {tr.get('batch')} mixtures "
            f"({'two rounds, the second on targets cleaned by the first round' if tr.get('rounds') == 2 else 'one round'}) "
            f"in {tr.get('train_seconds', 0) / 60:.0f} min on the 2-core CPU; anchors estimated at least "
            f"{tr.get('min_anchor_snr_db')} dB over their own clip's background")
    if "dictionary" in sep:
        methods.append(f"{'the default (`auto`, recorded as `separation.default_method`, the best measured here); ' if sep.get('default_method') == 'dictionary' else ''}`--method dictionary` (rows *supervised NMF*, label known, and *avscene dictionary, label "
                       "unknown*): dictionaries learnt from single-label training clips by `avscene train-dictionaries`")
    methods.append("`--method ncp` (rows *avscene soft / τ*): the paper's ranking of NMF components")
    return ("\n## Separation\n\n" + "\n".join(f"- {m}." for m in methods) + "\n\nNo clean stem, timestamp or box "
            "of avbench was used by any of them; val and val_shift were used for these tables only.\n\n"
            + "\n".join(parts))


def splits_section(val: Path, shift: Path) -> str:
    """The bundled model on val and val_shift side by side, from two ``avscene evaluate --json-out`` files."""
    a, b = json.loads(val.read_text()), json.loads(shift.read_text())

    def get(e: dict, *keys: str) -> float | None:
        for k in keys:
            e = (e or {}).get(k)  # type: ignore[assignment]
        return e  # type: ignore[return-value]

    rows = [("classification micro-F1", ("classification", "micro_f1")),
            ("— precision", ("classification", "micro_precision")), ("— recall", ("classification", "micro_recall")),
            ("classification macro-F1", ("classification", "macro_f1"))]
    modes = [m for m in ("sync", "async", "offscreen", "silent")
             if m in (a.get("recall_by_mode") or {}) or m in (b.get("recall_by_mode") or {})]
    rows += [(f"recall, {m} events", ("recall_by_mode", m, "recall")) for m in modes]
    rows += [(f"recall, {m} events, heard or seen", ("recall_by_mode_parse", m, "recall")) for m in modes
             if m in (a.get("recall_by_mode_parse") or {}) or m in (b.get("recall_by_mode_parse") or {})]
    rows += [(f"AVVP {level}-level {name}", ("avvp", level, key)) for level in ("segment", "event")
             for name, key in (("audio F1", "audio"), ("visual F1", "visual"), ("audio-visual F1", "audio_visual"),
                               ("Type@AV", "type_av"), ("Event@AV", "event_av"))
             if get(a, "avvp", level, key) is not None or get(b, "avvp", level, key) is not None]
    rows += [("SED segment F1 (1 s)", ("sed", "f1")), ("SED error rate", ("sed", "error_rate")),
             ("pointing game", ("localization", "pointing_accuracy")), ("CorLoc@0.5", ("localization", "corloc")),
             ("median IoU of the boxes", ("localization", "median_iou")),
             ("median box area / object area", ("localization", "median_size_ratio"))]
    lines = ["| metric | val | val_shift |", "|---|---|---|"]
    lines += [f"| {name} | {_f(get(a, *k))} | {_f(get(b, *k))} |" for name, k in rows]

    def worst(e: dict) -> str:
        per = {c["name"]: c["f1"] for c in get(e, "classification", "classes") or [] if c.get("f1") is not None}
        return ", ".join(f"{c} {v:.2f}" for c, v in sorted(per.items(), key=lambda kv: kv[1])[:4]) or "—"

    lines.append(f"| worst classes (F1) | {worst(a)} | {worst(b)} |")
    return ("\n## val and val_shift\n\n`avscene evaluate` of this model on avbench `val/` and `val_shift/` (100 "
            "clips each; `val_shift` is recorded differently: another instrument SoundFont, other photographs and "
            "ambience). Neither was used for training, model selection or calibration. Copied from the evaluation files.\n\n"
            + "\n".join(lines) + "\n" + per_class_table(a, b))


def per_class_table(a: dict, b: dict) -> str:
    """Per class, val / val_shift: classification F1, SED segment F1, and the boxes' pointing game,
    CorLoc@0.5, median IoU and median box / object area (a dash where a split has no such figure)."""
    def by_class(e: dict, section: str) -> dict[str, dict]:
        return {c["name"]: c for c in ((e.get(section) or {}).get("classes") or [])}

    sections = {s: (by_class(a, s), by_class(b, s)) for s in ("classification", "sed", "localization")}
    names = sorted(set().union(*(set(x) | set(y) for x, y in sections.values())))
    if not names:
        return ""
    cols = [("classification F1", "classification", "f1"), ("SED F1", "sed", "f1"),
            ("pointing", "localization", "pointing_accuracy"), ("CorLoc@0.5", "localization", "corloc"),
            ("median IoU", "localization", "median_iou"), ("box / object area", "localization", "median_size_ratio")]

    def cell(name: str, section: str, key: str) -> str:
        va, vb = (d.get(name, {}).get(key) for d in sections[section])
        return f"{_f(va)} / {_f(vb)}"

    rows = ["| class | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    rows += [f"| {n} | " + " | ".join(cell(n, s, k) for _, s, k in cols) + " |" for n in names]
    return ("\nPer class, val / val_shift (a class without a visual object has no box figures):\n\n"
            + "\n".join(rows) + "\n")


def _first(card: str, *markers: str) -> int:
    """Where the first of ``markers`` present in ``card`` starts."""
    return min(i for i in (card.find(m) for m in markers) if i >= 0)


def update_splits(folder: Path, val: Path, shift: Path) -> None:
    """Replace (or add, before the noise-stress or separation section) the val / val_shift section of the card."""
    card = (folder / "README.md").read_text()
    end = _first(card, NOISE_START, SEP_START, SEP_END)
    start = card.find(SPLITS_START)
    start = end if start < 0 or start > end else start
    (folder / "README.md").write_text(card[:start] + splits_section(val, shift) + card[end:])


def _noise_rows(evals: list[tuple[str, dict]]) -> list[str]:
    """One row per noise family and SNR: micro-F1 (change from clean) and the highest per-class
    false-positive rate (its class), per split."""
    keys = list(dict.fromkeys((c["family"], c["snr_db"]) for _, e in evals for c in e["conditions"]))
    lines = ["| noise | texture | SNR dB | " + " | ".join(f"{n} micro-F1 (Δ clean) | {n} max FP rate (class)"
                                                       for n, _ in evals) + " |",
             "|---|---|---|" + "---|---|" * len(evals)]
    for fam, snr in keys:
        cells = []
        for _, e in evals:
            c = next((c for c in e["conditions"] if (c["family"], c["snr_db"]) == (fam, snr)), None)
            if c is None:
                cells += ["—", "—"]
                continue
            clean = e["clean"]["micro_f1"]
            delta = "" if c["micro_f1"] is None or clean is None else f" ({c['micro_f1'] - clean:+.3f})"
            cells += [f"{_f(c['micro_f1'])}{delta}",
                      f"{_f(c['max_fp_rate'])}{' (' + c['worst_class'] + ')' if c.get('worst_class') else ''}"]
        texture = next((c["texture"] for _, e in evals for c in e["conditions"] if c["family"] == fam), None)
        name = "all of the above (pooled)" if fam == "all" else f"`{fam}`"
        lines.append(f"| {name} | {texture or '—'} | {snr:g} | " + " | ".join(cells) + " |")
    return lines


def noise_section(val: Path, shift: Path | None) -> str:
    """The card's noise-stress section, from ``avscene evaluate --add-noise … --json-out`` files."""
    evals = [(n, json.loads(p.read_text())["noise_stress"]) for n, p in (("val", val), ("val_shift", shift))
             if p is not None]
    missing = [n for n, e in evals if e is None]
    if missing:
        raise UsageError(f"the evaluation of {', '.join(missing)} has no noise_stress section: run "
                         "avscene evaluate with --add-noise")
    clean = " / ".join(f"{n} micro-F1 {_f(e['clean']['micro_f1'])}, max FP rate {_f(e['clean']['max_fp_rate'])}"
                       for n, e in evals)
    lines = _noise_rows(evals)
    families = list(dict.fromkeys(p["family"] for _, e in evals for p in e["pure_noise"]))
    pure = ["| noise | " + " | ".join(f"{n}: clips with any label (of N)" for n, _ in evals) + " |",
            "|---|" + "---|" * len(evals)]
    for fam in families:
        cells = []
        for _, e in evals:
            p = next((p for p in e["pure_noise"] if p["family"] == fam), None)
            cells.append("—" if p is None else f"{_f(p['any_label'])} (of {p['n_clips']})")
        pure.append(f"| `{fam}` | " + " | ".join(cells) + " |")
    return ("\n## Noise stress\n\n`avscene evaluate --add-noise FAMILY:SNR`: each clip again with a background of "
            "the project's procedural noise bank (`avscene/dsp/noise.py`) added at SNR dB over the clip's own "
            "mixture power; the families here are held out from training (never heard by the model). Micro-F1, "
            "and per class the false-positive rate on the clips without that class (the highest of the 15 "
            f"shown). Clean: {clean}. Copied from the evaluation files.\n\n" + "\n".join(lines)
            + "\n\nPure noise (no event): each clip's audio replaced by the noise at the clip's level, frames "
            "left out (they show the clip's objects), so an audio-only input decided at the heard threshold "
            "(`ModelConfig.input_threshold`); any label is a false alarm.\n\n" + "\n".join(pure) + "\n")


def update_noise_stress(folder: Path, val: Path, shift: Path | None) -> None:
    """Replace (or add, before the separation section) the noise-stress section of the card."""
    card = (folder / "README.md").read_text()
    end = _first(card, SEP_START, SEP_END)
    start = card.find(NOISE_START)
    start = end if start < 0 or start > end else start
    (folder / "README.md").write_text(card[:start] + noise_section(val, shift) + card[end:])


RECIPE_NOTE = "a temporal context over the audio windows added, with the background/timbre recipe"


def config_lines(cfg: dict) -> tuple[str, str]:
    """The card's *Configuration* lines: ``config.json``'s model and preprocessing."""
    return f"- model: `{json.dumps(cfg['model'])}`", f"- preprocessing: `{json.dumps(cfg['preprocess'])}`"


def configuration(card: str, cfg: dict) -> str:
    """The card with its *Configuration* lines rewritten from ``config.json``."""
    model, pre = config_lines(cfg)
    card = re.sub(r"^- model: `.*`$", lambda _: model, card, count=1, flags=re.M)
    return re.sub(r"^- preprocessing: `.*`$", lambda _: pre, card, count=1, flags=re.M)


def update_separation(folder: Path, val: Path | None, shift: Path | None) -> None:
    """Replace the separation section of ``folder/README.md`` (or add it before the limitations)."""
    card = (folder / "README.md").read_text()
    end = card.index(SEP_END)
    start = card.find(SEP_START)
    start = end if start < 0 or start > end else start
    config = read_config(folder)
    (folder / "README.md").write_text(card[:start] + separation_section(val, shift, config) + card[end:])

def bundled_card(runs: Path, run: str, cfg: dict, *, size_mb: float, processes: int, base: Path | None = None,
                 sep: Path | None = None, sep_shift: Path | None = None, kept_separation: bool = False,
                 earlier: str = "") -> str:
    """The bundled model's card (:data:`BUNDLED_CARD`): ``cfg`` is its ``config.json``, ``run`` the run
    (under ``runs``) it was copied from; the variant table from the runs' evaluation files
    (:func:`variant_row`), the recipe from the training records (:func:`train_command`; ``base``: the
    run it was fine-tuned from), the separation section from ``evaluate-separation``'s reports."""
    rows = [r for d in sorted(runs.iterdir()) if d.is_dir() and (r := variant_row(d.name, d))]
    tr = cfg.get("training", {})
    command = train_command(tr, run, processes)
    if base is not None:  # fine-tuned: first the run it started from, then the fine-tuning
        base_tr = read_config(base).get("training") or {}
        command = (f"{train_command(base_tr, base.name, base_tr.get('processes', processes))}\n# then fine-tuned "
                   f"from it ({tr.get('init_model')} held that model) with the robustness recipe:\n{command}")
    threshold = cfg["model"].get("threshold")
    threshold_note = ("its calibrated threshold is also 0" if not threshold else
                      f"its calibrated threshold, {threshold:g}, is used by `avscene classify`")
    how = (f"{processes} processes (DistributedDataParallel, gloo, one thread each)" if processes > 1
           else "one process")
    kept_note = ("\nThe separation dictionaries and network were kept from the model this one was fine-tuned "
                 "from (its audio network chose their training anchors); the reports above were measured with "
                 "that model, so their *label unknown* rows predate the fine-tuning.\n" if kept_separation and sep
                 else "")
    return BUNDLED_CARD.format(
        front_matter=front_matter(datasets=("avbench",)), variant=cfg["model"]["variant"], run=run,
        threshold_note=threshold_note, how=how, command=command, labels=", ".join(cfg["labels"]),
        size=f"{size_mb:.1f}", config="\n".join(config_lines(cfg)), rows="\n".join(rows),
        sep=separation_section(sep, sep_shift, cfg) + kept_note, earlier=earlier)


def fine_tuned_card(card: str, cfg: dict, *, run: str, note: str, size_mb: float) -> str:
    """The bundled card after its classifier was replaced by the run ``run`` fine-tuned from it
    (``cfg``: the new ``config.json``): the recipe gains the run's command, said to change ``note``,
    the size line and the *Configuration* lines are the new weights'."""
    tr = cfg.get("training", {})
    command = train_command(tr, run, tr.get("processes", 1))
    recipe_end = card.index("```", card.index("# then fine-tuned from it"))
    card = (card[:recipe_end] + f"# then fine-tuned again from that model ({tr.get('init_model')} held it), "
            f"{note}:\n{command}\n" + card[recipe_end:])
    card = re.sub(r"[0-9.]+ MB of float32 weights", f"{size_mb:.1f} MB of float32 weights", card, count=1)
    return configuration(card, cfg)


BUNDLED_CARD = """{front_matter}
# avscene-av-small

The model bundled with avscene: the `{variant}` variant of the weakly supervised audio-visual
network of Parekh et al. (IEEE/ACM TASLP 2019), `small` preset, trained **from scratch** on
the 600 training clips of avbench (synthetic scenes: General MIDI instruments, procedural
street sounds, Noto emoji over procedural and photographic backgrounds) with **video-level
labels only** — no boxes, timestamps or clean sources. {size} MB of float32 weights.

Classes: {labels}.

## How it was made

```bash
AVSCENE_CACHE=runs/cache scripts/train_bundled.sh ../shared/avbench runs   # every variant, then evaluate
python scripts/model_card.py runs {run} models/avscene-av-small
```

which trains each variant for the comparison below. The bundled weights come from

```bash
{command}
```

(AdamW, cosine decay, batches drawn label-first, augmentation; the epoch with the best micro-F1
on a held-out 10 % of the *training* clips is kept), on a 2-core CPU, no GPU, in {how}.

## The paper's variants (Table I) on avbench `val/` and `val_shift/`

100 clips each, never used for training or model selection; `val_shift` is recorded differently
(another instrument SoundFont, other photographs and ambience). Classification micro-F1
(precision / recall) on all clips and micro-F1 on the clips with an asynchronous event; sound
event detection on 1-s segments (DCASE 2017 segment-based F1), val / val_shift; pointing game on
the sampled frames where the object is visible (the top box's centre lies in the ground-truth
box), val / val_shift. All at the paper's decision threshold 0 (for the bundled
model, {threshold_note}). "train min" is wall time on the 2-core CPU; some runs shared it with
a second run, so the minutes are not comparable between rows. The variants other than the
bundled one were trained for the comparison only, all with one schedule and recipe: 20 epochs
from scratch, batch 12, lr 0.001, the default augmentation, no bag mixing and no per-modality
loss (`scripts/train_bundled.sh`, step 1; `config.json` of each run has the rest). 20 epochs is
a third of the bundled model's base schedule: the rows compare the variants at one budget, they
do not show what each reaches when trained to convergence.

| variant | val micro-F1 (P / R) | val, async clips | val_shift micro-F1 (P / R) | val_shift, async clips | SED F1 | pointing | best epoch / run | train min |
|---|---|---|---|---|---|---|---|---|
{rows}
{earlier}{sep}
## Limitations

Trained on synthetic scenes of 15 classes: real recordings, other instruments' timbres and
cluttered real backgrounds are out of its training distribution. Visual proposals come from
EdgeBoxes on gradient edges (no structured-edge model), so small or low-contrast objects may
have no proposal.

## Configuration

{config}
"""
