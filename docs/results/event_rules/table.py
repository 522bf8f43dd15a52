"""Print the event-rule ablation (markdown) from the evaluation files of ``run.py``:
``calibration.json``, ``eval_clean_{val,val_shift}.json`` and ``evaluate_{val,val_shift}.json``.

    python docs/results/event_rules/table.py > docs/results/event_rules/ablation.md
"""
import json
from pathlib import Path

HERE = Path(__file__).parent
SPLITS = ("val", "val_shift")


def f(x):
    return "—" if x is None or x != x else f"{x:.3f}"


def load(name):
    p = HERE / name
    return json.loads(p.read_text()) if p.is_file() else None


cal = load("calibration.json")
print("# Sound-event rules of the bundled model: splice calibration and ablation (issue 30)\n")
print(f"Splice set: {cal['splices']} splices of {cal['hold_out_clips']} training hold-out clips "
      f"({', '.join(f'{k} {v}' for k, v in cal['variants'].items())}).\n")
print("## On the splice set (training hold-out: what the calibration sees)\n")
print("| rule | variant | segment F1 (parts' labels) | precision | recall | part F1 | absent-part false alarms | "
      "consistency F1 |")
print("|---|---|---|---|---|---|---|---|")
for key, rows in cal["splice_figures"].items():
    name = key if key == "default" else f"chosen by {key} F1: {cal['chosen'][key]['rule']}"
    for variant, r in rows.items():
        print(f"| {name} | {variant} | {f(r['segment_f1'])} | {f(r['precision'])} | {f(r['recall'])} | "
              f"{f(r['part_f1'])} | {f(r['absent_part_alarm_rate'])} | {f(r.get('consistency_f1'))} |")
clean = {s: load(f"eval_clean_{s}.json") for s in SPLITS}
rules = [r["rule"] for r in clean["val"]]
by = {s: {r["rule"]: r for r in clean[s]} for s in SPLITS}
print("\n## val / val_shift (clean)\n")
print("| rule | SED F1 | ER | precision | recall | AVVP audio | AVVP visual | AVVP AV | Type@AV |")
print("|---|---|---|---|---|---|---|---|---|")
for rule in rules:
    cells = []
    for key in ("f1", "error_rate", "precision", "recall"):
        cells.append(" / ".join(f(by[s][rule]["sed"][key]) for s in SPLITS))
    for key in ("audio", "visual", "audio_visual", "type_av"):
        cells.append(" / ".join(f(by[s][rule]["avvp"]["segment"][key]) for s in SPLITS))
    print(f"| {rule} | " + " | ".join(cells) + " |")
for s in SPLITS:
    classes = [c["name"] for c in clean[s][0]["sed"]["classes"] if c.get("n_ref")]
    print(f"\n### Per class, SED segment F1 on {s}\n")
    print("| rule | " + " | ".join(classes) + " |\n|---|" + "---|" * len(classes))
    for rule in rules:
        cls = {c["name"]: c for c in by[s][rule]["sed"]["classes"]}
        print(f"| {rule} | " + " | ".join(f(cls[c]["f1"]) for c in classes) + " |")
    print(f"\nPer class, precision / recall on {s} (first rule and the calibrated ones):\n")
    print("| rule | " + " | ".join(classes) + " |\n|---|" + "---|" * len(classes))
    for rule in [rules[0], *(r for r in rules if r.startswith("splice-calibrated"))]:
        cls = {c["name"]: c for c in by[s][rule]["sed"]["classes"]}
        print(f"| {rule} | " + " | ".join(f"{f(cls[c]['precision'])} / {f(cls[c]['recall'])}" for c in classes) + " |")
ev = {s: load(f"evaluate_{s}.json") for s in SPLITS}
if all(ev.values()):
    before = {s: json.loads((HERE.parent / "localisation" / f"eval_after_{s}.json").read_text()) for s in SPLITS}
    print("\n## avscene evaluate of the defaults (evaluate_val.json, evaluate_val_shift.json)\n")
    print("Classification micro-F1 " + " / ".join(f(ev[s]["classification"]["micro_f1"]) for s in SPLITS)
          + "; SED F1 " + " / ".join(f(ev[s]["sed"]["f1"]) for s in SPLITS)
          + ", ER " + " / ".join(f(ev[s]["sed"]["error_rate"]) for s in SPLITS)
          + "; AVVP segment audio / visual / AV / Type@AV " + " and ".join(
              " / ".join(f(ev[s]["avvp"]["segment"][k]) for k in ("audio", "visual", "audio_visual", "type_av"))
              for s in SPLITS) + ".\n")
    print("### Boxes: no evidence, no box (frame_boxes), before → after\n")
    print("Before: `docs/results/localisation/eval_after_*.json` (a frame without evidence took the map of the "
          "localisation weights in evaluate, while localize drew no box there).\n")
    print("| | CorLoc@0.5 | pointing | median IoU | box/object area | frames scored |\n|---|---|---|---|---|---|")
    for s in SPLITS:
        b, a = before[s]["localization"], ev[s]["localization"]
        print(f"| {s} | " + " | ".join(f"{f(b[k])} → {f(a[k])}" for k in
                                      ("corloc", "pointing_accuracy", "median_iou", "median_size_ratio"))
              + f" | {b['n']} → {a['n']} |")
    print("\nPer class, CorLoc / pointing (before → after):\n\n| class | val | val_shift |\n|---|---|---|")
    for c in [x["name"] for x in ev["val"]["localization"]["classes"]]:
        cells = []
        for s in SPLITS:
            b = next((x for x in before[s]["localization"]["classes"] if x["name"] == c), {})
            a = next((x for x in ev[s]["localization"]["classes"] if x["name"] == c), {})
            cells.append(f"{f(b.get('corloc'))} / {f(b.get('pointing_accuracy'))} → "
                         f"{f(a.get('corloc'))} / {f(a.get('pointing_accuracy'))}")
        print(f"| {c} | " + " | ".join(cells) + " |")
    print("\n### Noise stress: held-out families at 0 dB (the defaults)\n")
    print("| condition | micro-F1 | SED F1 | SED ER | AVVP audio | Type@AV |\n|---|---|---|---|---|---|")
    rows = {s: {c["family"]: c for c in ev[s]["noise_stress"]["conditions"]} for s in SPLITS}
    clean = {s: {"micro_f1": ev[s]["classification"]["micro_f1"], "sed_f1": ev[s]["sed"]["f1"],
                 "sed_error_rate": ev[s]["sed"]["error_rate"], "avvp_segment": ev[s]["avvp"]["segment"]} for s in SPLITS}
    for fam in ["clean", *rows["val"]]:
        cell = {s: clean[s] if fam == "clean" else rows[s][fam] for s in SPLITS}
        print(f"| {fam} | " + " | ".join(" / ".join(f(cell[s][k]) for s in SPLITS)
                                         for k in ("micro_f1", "sed_f1", "sed_error_rate"))
              + " | " + " | ".join(" / ".join(f(cell[s]["avvp_segment"][k]) for s in SPLITS)
                                   for k in ("audio", "type_av")) + " |")
    print("\nPer class, SED F1 clean → all held-out families pooled at 0 dB:\n\n| class | val | val_shift |\n|---|---|---|")
    for c in ev["val"]["sed"]["classes"]:
        if not c.get("n_ref"):
            continue
        cells = []
        for s in SPLITS:
            cl = next(x for x in ev[s]["sed"]["classes"] if x["name"] == c["name"])
            cells.append(f"{f(cl['f1'])} → {f(rows[s]['all']['sed_classes'][c['name']])}")
        print(f"| {c['name']} | " + " | ".join(cells) + " |")
