"""evaluate / evaluate-separation refuse an existing --json-out before doing any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from avscene.cli.app import main


@pytest.mark.parametrize("command", ["evaluate", "evaluate-separation"])
def test_existing_json_out_is_refused_up_front(command: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report.json"
    out.write_text("keep me")
    # the manifest / separation set does not even exist: the refusal must come first
    code = main([command, str(tmp_path / "missing"), "--model", str(tmp_path / "no-model"), "--json-out", str(out)])
    _, err = capsys.readouterr()
    assert code == 2 and "--force" in err
    assert out.read_text() == "keep me"


def test_evaluate_reports_recall_by_event_mode_from_the_detections(tiny_model_dir, tmp_path) -> None:
    """Every ground-truth event counts once, found when classify detects its class in the clip."""
    import json as _json

    from avscene.checkpoint.load import load_pretrained
    from avscene.tasks.classify import ClassifyOptions, classify_file
    from avscene.testing.media import write_video
    from avscene.evaluation.evaluate import evaluate

    loaded = load_pretrained(str(tiny_model_dir))
    names = list(loaded.labels)
    (tmp_path / "clips").mkdir()
    rows, gts = ["clip,labels"], []
    plan = [("00000", [(names[0], "sync"), (names[1], "silent")]), ("00001", [(names[2], "offscreen")]),
            ("00002", [(names[0], "silent")])]
    for i, (clip, events) in enumerate(plan):
        write_video(tmp_path / "clips" / f"{clip}.mp4", duration=2.0, freq=300.0 + 200 * i)
        rows.append(f"{clip},{';'.join(c for c, _ in events)}")
        gts.append({"clip": clip, "duration": 2.0, "labels": [c for c, _ in events],
                    "events": [{"class": c, "mode": m, "audio": None if m == "silent" else [0.0, 2.0],
                                "visual": None} for c, m in events]})
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "ground_truth.jsonl").write_text("".join(_json.dumps(g) + "\n" for g in gts))
    rep = evaluate(loaded, tmp_path / "labels.csv")
    limit = loaded.config.decision_threshold
    found: dict[str, list[bool]] = {}
    for clip, events in plan:
        detected = {lab.label for lab in classify_file(tmp_path / "clips" / f"{clip}.mp4", loaded,
                                                       ClassifyOptions(threshold=limit)).labels if lab.score > limit}
        for c, m in events:
            found.setdefault(m, []).append(c in detected)
    assert rep.recall_by_mode == {m: {"recall": sum(v) / len(v), "n": len(v)}
                                  for m, v in (("sync", found["sync"]), ("offscreen", found["offscreen"]),
                                               ("silent", found["silent"]))}
    assert rep.to_json()["recall_by_mode"]["silent"]["n"] == 2
