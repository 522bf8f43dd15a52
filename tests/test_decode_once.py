"""Each input is decoded once: ``report`` (analysis, thumbnails, audio tracks and separation share one
pass), ``separate --label`` (the label's check and the separation share one pass); ``report``
refuses an unusable ``--method`` once, before any input, as ``separate`` does."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from avscene.cli.app import main

ALL = ["--threshold", "-1000"]  # every class predicted: report separates each of them


@pytest.fixture
def opened(monkeypatch) -> Counter:
    """How often each file is decoded: every reader of avscene decodes through the one packet loop
    ``_decoded_frames`` (avscene.io.chunks, imported by name into io.decode and io.audio_stream);
    a pass that decodes nothing (a header read) does not count."""
    import avscene.io.audio_stream
    import avscene.io.chunks
    import avscene.io.decode

    count: Counter = Counter()
    real = avscene.io.chunks._decoded_frames

    def counting(container, *args, **kwargs):
        frames = real(container, *args, **kwargs)
        first = next(frames, None)
        if first is not None:
            count[Path(container.name).name] += 1
            yield first
            yield from frames

    for module in (avscene.io.chunks, avscene.io.decode, avscene.io.audio_stream):
        monkeypatch.setattr(module, "_decoded_frames", counting)
    return count


def test_report_decodes_each_input_once(tiny_model_dir, clips, tmp_path, opened, capsys) -> None:
    from avscene.testing.models import TINY_LABELS

    jsonl = tmp_path / "r.jsonl"
    code = main(["report", str(clips["av"]), str(clips["audio_only"]), "-o", f"{tmp_path}/out/", "--separate",
                 "--model", str(tiny_model_dir), "--device", "cpu", "--jsonl", str(jsonl), *ALL])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [len(r["report"]["separations"]) for r in records] == [len(TINY_LABELS)] * 2  # L classes separated
    assert opened == {clips["av"].name: 1, clips["audio_only"].name: 1}, opened


def test_separate_with_a_label_decodes_the_file_once(tiny_model_dir, clips, tmp_path, opened, capsys) -> None:
    code = main(["separate", str(clips["av"]), "--label", "violin", "-o", str(tmp_path / "{name}.wav"),
                 "--model", str(tiny_model_dir), "--device", "cpu", "--components", "4", "--json"])
    assert code == 0, capsys.readouterr().err
    assert opened == {clips["av"].name: 1}, opened


def test_one_pass_separation_equals_the_streamed_one_and_still_checks_the_label(tiny_model_dir, clips) -> None:
    import avscene
    from avscene.tasks.separate import SeparateOptions, separate_file, separate_samples
    from avscene.io.decode import read_audio

    loaded = avscene.load_model(str(tiny_model_dir), device="cpu")
    opts = SeparateOptions(label="violin", nmf=SeparateOptions().nmf.__class__(k=4))
    checked = separate_file(clips["av"], loaded, opts)  # one pass with the classifier
    alone = separate_file(clips["av"], loaded, SeparateOptions(label="violin", nmf=opts.nmf, check_label=False))
    assert len(checked.source) == len(alone.source) == len(read_audio(clips["av"]))
    np.testing.assert_allclose(checked.source, alone.source, atol=1e-6)
    np.testing.assert_allclose(checked.source + checked.residual, read_audio(clips["av"]), atol=1e-5)
    score = dict((x.label, x.score) for x in avscene.classify(clips["av"], model=loaded).labels)["violin"]
    warned = any("'violin' is not predicted" in w for w in checked.result.warnings)
    assert warned == (score <= loaded.config.decision_threshold)
    assert not any("not predicted" in w for w in alone.result.warnings)
    # the report's separation of its soundtrack is the same too
    shared = separate_samples(clips["av"], read_audio(clips["av"]), loaded, "violin", opts)
    np.testing.assert_allclose(shared.source, alone.source, atol=1e-6)


def test_report_refuses_an_unusable_method_once_before_any_input(tiny_model_dir, clips, tmp_path, opened,
                                                                 capsys) -> None:
    """The tiny checkpoint carries no mask network: ``--method mask`` is refused like ``separate`` refuses it."""
    out = tmp_path / "out"
    code = main(["report", str(clips["av"]), str(clips["audio_only"]), "-o", f"{out}/", "--separate",
                 "--method", "mask", "--model", str(tiny_model_dir), "--device", "cpu"])
    report_err = capsys.readouterr().err
    assert code == 2, report_err
    assert not opened and not (out.exists() and any(out.iterdir())), (opened, report_err)  # no input processed
    code = main(["separate", str(clips["av"]), "--method", "mask", "-o", str(tmp_path / "{name}.wav"),
                 "--model", str(tiny_model_dir), "--device", "cpu"])
    separate_err = capsys.readouterr().err
    assert code == 2 and separate_err.strip() and separate_err.strip() == report_err.strip(), (separate_err, report_err)


def _chunk(times, frames, audio=None):
    from avscene.io.decode import ClipChunk

    return ClipChunk(index=0, start=0.0, end=0.0, frames=frames, frame_times=np.asarray(times, float), audio=audio,
                     audio_start=0, sample_rate=16000)


@pytest.mark.parametrize(("n", "k"), [(5, 7), (12, 7), (14, 7), (90, 7), (1000, 24)])
def test_thumbnails_are_chosen_evenly_from_a_bounded_number_of_frames(n, k) -> None:
    """Frames are handed over in chunks of 10 while decoding; at most 2k + 1 small copies are held, and the
    k shown are spread over the input: up to 2k frames exactly the evenly spaced ones, beyond it the
    nearest kept (within half the spacing of the kept ones)."""
    from avscene.tasks.report import Decoded, _chosen_frames

    times = [i + 0.5 for i in range(n)]
    frames = np.zeros((n, 4, 6, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(n) % 256  # each frame knows its index
    d, held = Decoded(k), 0
    for a in range(0, n, 10):
        d.add(_chunk(times[a:a + 10], frames[a:a + 10]))
        held = max(held, len(d.frames()))
    assert held <= 2 * k + 1
    chosen = _chosen_frames(times, d.frames(), k)
    got = [t for t, _, _ in chosen]
    assert all(int(img[0, 0, 0]) == int(t - 0.5) % 256 for t, img, _ in chosen)  # each image is its instant's
    ideal = [times[round(i)] for i in np.linspace(0, n - 1, min(n, k))]
    if n <= 2 * k:
        assert got == ideal
    else:
        assert len(got) == k and got[0] == times[0] and got[-1] == times[-1]
        assert max(abs(g - i) for g, i in zip(got, ideal)) <= d.stride / 2
