"""Issue 30, inference side: the event rule calibrated on splices of the training hold-out, and each
ingredient of it, on val and val_shift (the noise stress of the defaults is ``avscene evaluate
--add-noise heldout``: see README.md).

    python docs/results/event_rules/run.py calibrate   # splices of the train hold-out -> calibration.json
    python docs/results/event_rules/run.py evaluate    # every rule of RULES on val, val_shift -> eval_clean_*.json
    python docs/results/event_rules/table.py > docs/results/event_rules/ablation.md

Run from the repository root, avbench in ``$AVBENCH`` (default ``../shared/avbench``), one thread. The
network runs once per clip (and noise version); its outputs are cached under ``runs/event_rules/`` and
every rule is applied to them by the functions ``localize`` and ``evaluate`` use
(``tasks.localize.localize_from_analysis``; SED: ``evaluation.metrics.sed``, AVVP: ``evaluation.metrics.avvp``,
as ``avscene evaluate`` scores them). Nothing of val / val_shift chooses anything: the calibrated rows
are chosen on the splices alone (``avscene.train.event_calibration``).
"""
import dataclasses
import json
import os
import pickle
import sys
from pathlib import Path

from avscene.dsp.events import EventRule
from avscene.checkpoint.format import read_config
from avscene.tasks._pipeline import analyse
from avscene.tasks.localize import LocalizeOptions, localize_from_analysis
from avscene.tasks.models import load_model
from avscene.threads import thread_budget
from avscene.train.augment import AugmentOptions
from avscene.train.data import read_manifest
from avscene.evaluation.evaluate import ground_truth_parse, predicted_parse, read_ground_truth
from avscene.train.event_calibration import (
    best_event_rule, clip_event_scores, consistency_scores, part_scores, rule_metrics, splice_set,
)
from avscene.evaluation.metrics.avvp import avvp_metrics
from avscene.evaluation.metrics.sed import segment_activity, segment_based_metrics
from avscene.train.calibrate import holdout_examples

MODEL = Path("models/avscene-av-small")
AVBENCH = Path(os.environ.get("AVBENCH", "../shared/avbench"))
OUT = Path("docs/results/event_rules")
CACHE = Path("runs/event_rules")
SPLITS = ("val", "val_shift")
CALIBRATED = {}  # filled from calibration.json: "splice-calibrated (segment F1)", "(part F1)"
RULES = {  # name -> LocalizeOptions; every row fixed beforehand except the calibrated ones
    "default: hysteresis -0.5 (localize today)": LocalizeOptions(),
    "no hysteresis (E > 0)": LocalizeOptions(event_low=None),
    "hysteresis -0.5 + median 3": LocalizeOptions(event_rule=EventRule(0.0, -0.5, median=3)),
    "hysteresis -0.5 + fraction 0.5 of the best (predicted)": LocalizeOptions(event_rule=EventRule(0.0, -0.5, fraction=0.5)),
    "hysteresis -0.5 + margin 0.25 of the best (predicted)": LocalizeOptions(event_rule=EventRule(0.0, -0.5, margin=0.25)),
    "hysteresis -0.5 + margin 0.5 of the best (predicted)": LocalizeOptions(event_rule=EventRule(0.0, -0.5, margin=0.5)),
    # the scope "unheard" was added after the val_shift figures of the margin rows above were seen (see README)
    "hysteresis -0.5 + margin 0.25 (predicted, not heard)": LocalizeOptions(event_rule=EventRule(0.0, -0.5, margin=0.25, scope="unheard")),
    "hysteresis -0.5 + margin 0.5 (predicted, not heard)": LocalizeOptions(event_rule=EventRule(0.0, -0.5, margin=0.5, scope="unheard")),
    "centred on the clip's median: start 0.5, continue -0.5": LocalizeOptions(event_rule=EventRule(0.5, -0.5, centre=True)),
    "centred on the clip's median: start 1.0, continue 0": LocalizeOptions(event_rule=EventRule(1.0, 0.0, centre=True)),
}


def calibrate() -> None:
    config = read_config(MODEL)
    held = holdout_examples(config["training"], AVBENCH / "train" / "labels.csv", MODEL)
    loaded = load_model(str(MODEL), offline=True, device="cpu")
    names = list(loaded.labels)
    (CACHE / "splices").mkdir(parents=True, exist_ok=True)
    cached = CACHE / "splices.pkl"
    if cached.is_file():
        data = pickle.loads(cached.read_bytes())
    else:
        augment = AugmentOptions.from_dict(config["training"].get("augment_opts") or {})
        data = [(sp, clip_event_scores(p, loaded, sp.reference(), sp.duration))
                for p, sp in splice_set(held, CACHE / "splices", sample_rate=loaded.preprocess.sample_rate,
                                        augment=augment)]
        cached.write_bytes(pickle.dumps(data))
    scores = [s for _, s in data]
    out = {"hold_out_clips": len(held), "splices": len(data),
           "variants": {v: sum(sp.variant == v for sp, _ in data) for v in ("clean", "augmented", "shifted")},
           "chosen": {}, "splice_figures": {}}
    rules = {"default": None}
    splices = [sp for sp, _ in data]
    pseudo = dict(zip(map(id, scores), consistency_scores(splices, scores, names)))  # every splice has a clean one
    for criterion in ("segment", "part", "consistency"):
        rule, figure = best_event_rule(scores, names, criterion=criterion, splices=splices)
        out["chosen"][criterion] = {"rule": rule.to_json(), "figure": figure}
        rules[criterion] = rule
    for key, rule in rules.items():
        rows = {}
        for variant in ("clean", "augmented", "shifted", "all"):
            sel = [(sp, s) for sp, s in data if variant in ("all", sp.variant)]
            m = rule_metrics([s for _, s in sel], rule, names)
            f1, alarms = part_scores([s for _, s in sel], [sp.point for sp, _ in sel], rule, names)
            c = rule_metrics([pseudo[id(s)] for _, s in sel], rule, names)
            rows[variant] = {"segment_f1": m.f1, "precision": m.precision, "recall": m.recall,
                             "part_f1": f1, "absent_part_alarm_rate": alarms, "consistency_f1": c.f1}
        out["splice_figures"][key] = rows
    (OUT / "calibration.json").write_text(json.dumps(out, indent=2) + "\n")


def calibrated_rules() -> dict:
    cal = json.loads((OUT / "calibration.json").read_text())
    return {f"splice-calibrated ({c} F1): {_describe(EventRule.from_json(v['rule']))}":
            LocalizeOptions(event_rule=EventRule.from_json(v["rule"])) for c, v in cal["chosen"].items()}


def _describe(r: EventRule) -> str:
    parts = [f"start {r.start:g}", "no hysteresis" if r.low is None else f"continue {r.low:g}"]
    parts += [f"median {r.median}"] if r.median > 1 else []
    parts += [f"fraction {r.fraction:g}"] if r.fraction is not None else []
    parts += [f"margin {r.margin:g}"] if r.margin is not None else []
    parts += ["centred"] if r.centre else []
    parts += ["relative parts for predicted classes not heard"] if r.scope == "unheard" else []
    return ", ".join(parts)


def analyses(split: str, loaded) -> list:
    """Per clip (example, record, [its analysis]), cached."""
    gt = read_ground_truth(AVBENCH / split / "ground_truth.jsonl")
    folder = CACHE / "analyses" / split
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ex in read_manifest(AVBENCH / split / "labels.csv", class_names=list(loaded.labels)):
        f = folder / f"{ex.path.stem}.pkl"
        if not f.is_file():
            f.write_bytes(pickle.dumps([analyse(ex.path, loaded)]))
        out.append((ex, gt[ex.path.stem], pickle.loads(f.read_bytes())))
    return out


def score(data, k: int, loaded, opts: LocalizeOptions) -> dict:
    """SED and AVVP of ``opts`` on version ``k`` of every clip, as ``avscene evaluate`` scores them."""
    names = list(loaded.labels)
    opts = dataclasses.replace(opts, snap=False)
    ref_r, est_r, gp, ep = [], [], [], []
    for ex, rec, versions in data:
        a = versions[k]
        res = localize_from_analysis(ex.path, a, loaded, opts)
        duration = float(rec.get("duration", a.info.duration))
        ref = [(ev["audio"][0], ev["audio"][1], ev["class"]) for ev in rec["events"] if ev["audio"]]
        est = [(e.onset, min(e.offset, duration), e.label) for e in res.events]
        ref_r.append(segment_activity(ref, class_names=names, duration=duration))
        est_r.append(segment_activity(est, class_names=names, duration=duration))
        gp.append(ground_truth_parse(rec, names, duration=duration))
        ep.append(predicted_parse(res.timing, names, duration=duration))
    return {"sed": segment_based_metrics(ref_r, est_r, class_names=names).to_json(),
            "avvp": avvp_metrics(ep, gp).to_json(), "n_clips": len(data)}


def evaluate() -> None:
    loaded = load_model(str(MODEL), offline=True, device="cpu")
    rules = {**RULES, **calibrated_rules()}
    for split in SPLITS:
        data = analyses(split, loaded)
        rows = [{"rule": name, "condition": "clean", **score(data, 0, loaded, opts)} for name, opts in rules.items()]
        (OUT / f"eval_clean_{split}.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    with thread_budget(1):
        for step in sys.argv[1:]:
            {"calibrate": calibrate, "evaluate": evaluate}[step]()
