"""``from_json`` beside ``to_json``: a recorded result reads back as the same typed result.

``to_json`` rounds floats (the JSON contract), so a result and its JSON differ in the last
digits; what must hold is that the JSON read back is a result whose JSON is the same text, of
the same types (tuples, nested dataclasses), and that reading is stable from then on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avscene.results import (
    ClassifyResult,
    FailedInput,
    LocalizeResult,
    ReportResult,
    SeparateResult,
    json_text,
    result_from_json,
)


@pytest.fixture(scope="module")
def real(tiny_model_dir, clips, tmp_path_factory) -> dict[str, object]:
    """Real results of every task on the session clips (the tiny model)."""
    from avscene.tasks.localize import LocalizeOptions
    from avscene.tasks.models import load_model
    from avscene.tasks.outputs import SOURCE, RESIDUAL, WriteOptions, report_and_write, PAGE, separate_and_write
    from avscene.tasks.report import ReportOptions
    from avscene.tasks.separate import SeparateOptions
    from avscene.tasks.classify import classify_file
    from avscene.tasks.localize import localize_file

    out = tmp_path_factory.mktemp("res")
    loaded = load_model(str(tiny_model_dir), device="cpu")
    loc_opts = LocalizeOptions(labels=("violin", "drum"), boxes=2)
    sep = separate_and_write(clips["av"], loaded=loaded, opts=WriteOptions(
        SeparateOptions(label="drum", method="ncp"), {SOURCE: str(out / "{name}.wav"), RESIDUAL: str(out / "r.wav")}))
    rep = report_and_write(clips["av"], loaded=loaded, opts=WriteOptions(
        ReportOptions(localize=loc_opts, max_embed_seconds=0.0), {PAGE: str(out / "{name}.html")}))
    return {"classify": classify_file(clips["av"], loaded), "localize": localize_file(clips["av"], loaded, loc_opts),
            "audio_only": localize_file(clips["audio_only"], loaded, loc_opts), "separate": sep, "report": rep,
            "failed": FailedInput(str(Path("x") / "broken.mp4"), "not a media file")}


@pytest.mark.parametrize(("kind", "cls"), [("classify", ClassifyResult), ("localize", LocalizeResult),
                                           ("audio_only", LocalizeResult), ("separate", SeparateResult),
                                           ("report", ReportResult), ("failed", FailedInput)])
def test_from_json_reads_back_what_to_json_wrote(real, kind, cls):
    x = real[kind]
    doc = json.loads(json_text(x.to_json()))  # through the text, as --resume reads a record
    back = cls.from_json(doc)
    assert type(back) is cls
    assert json_text(back.to_json()) == json_text(x.to_json())
    assert cls.from_json(json.loads(json_text(back.to_json()))) == back  # stable once rounded
    assert result_from_json(doc) == back  # the record's own kind is recognised


def test_from_json_keeps_the_types(real):
    back = LocalizeResult.from_json(json.loads(json_text(real["localize"].to_json())))
    c = back.classification
    assert isinstance(c.labels, tuple) and isinstance(c.parse, tuple) and isinstance(back.events, tuple)
    assert all(isinstance(t.heard, tuple) and all(isinstance(iv, tuple) for iv in t.heard) for t in back.timing.values())
    assert all(isinstance(b.box, tuple) for dets in back.visual.values() for b in dets)
    assert all(isinstance(p.audio_score, float) and isinstance(p.visual_score, float) for p in c.parse)
    assert [p.label for p in c.parse] == [p.label for p in real["localize"].classification.parse]


def test_from_json_refuses_a_record_of_another_kind():
    with pytest.raises(ValueError, match="not a result record"):
        result_from_json({"hello": 1})
