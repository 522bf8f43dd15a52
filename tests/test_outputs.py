"""The per-input output files of ``localize``, ``separate`` and ``report`` (``avscene.tasks.outputs``):
one template filler that never leaves the template's folder, clashes refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avscene.cli.app import main
from avscene.errors import UsageError
from avscene.tasks.outputs import (
    AUDACITY, PAGE, RENDER, RESIDUAL, SCORES_TSV, SOURCE, VTT, check_outputs, fill, report_page_template,
    scores_tsv_template,
)
from avscene.testing.media import write_audio, write_video
from avscene.testing.models import tiny_checkpoint

ODD_NAMES = ["...wav", "....mp4", "..wav", ".wav", "a..b.wav", "-x.wav", " .. .wav"]  # stems "..", "...", ".", ...
ODD_LABELS = ["..", ".", "a/b", "../../etc", "/abs", "x\\y"]


@pytest.mark.parametrize("name", ODD_NAMES)
@pytest.mark.parametrize("label", ODD_LABELS)
def test_a_substituted_value_never_leaves_the_templates_folder(tmp_path, name, label) -> None:
    folder = tmp_path / "out"
    for template in (f"{folder}/{{name}}/{{label}}.wav", f"{folder}/{{label}}/{{name}}.{{ext}}",
                     f"{folder}/{{name}}{{label}}"):
        path = fill(template, Path("videos") / name, label)
        # as many components as the template, each a plain name, all inside the folder
        assert len(path.parts) == len(Path(template).parts), path
        assert not {".", ".."} & set(path.parts[len(folder.parts):]), path
        assert path.resolve().is_relative_to(folder.resolve()), path


def test_plain_names_are_filled_unchanged() -> None:
    assert fill("out/{name}.{label}.{ext}", Path("a/clip.v2.mp4"), "violin") == Path("out/clip.v2.violin.mp4")
    assert fill("{name}.wav", Path("x.mp4")) == Path("x.wav")
    assert fill("o/{name}.{label}.wav", Path("x.mp4")) == Path("o/x.{label}.wav")  # label unknown yet: literal
    assert fill(scores_tsv_template("d{1}"), Path("a/x.mp4")) == Path("d{1}/x.tsv")  # braces of a folder kept


def test_separate_with_a_dotted_input_name_writes_inside_the_output_folder(tmp_path, capsys) -> None:
    """An input named ``...wav`` (stem ``..``) with ``-o 'out/{name}/{label}.wav'`` used to write
    ``./a.wav``, outside ``out/``."""
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    (tmp_path / "in").mkdir()
    src = write_audio(tmp_path / "in" / "...wav", duration=1.0, freq=440.0)
    out = tmp_path / "work" / "out"
    code = main(["separate", str(src), "--model", str(ckpt), "-l", "a", "-o", str(out / "{name}" / "{label}.wav"),
                 "--residual", str(out / "{name}.rest.wav"), "--components", "3", "--device", "cpu", "--json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    (doc,) = json.loads(stdout)
    written = sorted(p for p in (tmp_path / "work").rglob("*") if p.is_file())
    assert written == sorted([Path(doc["source_path"]), Path(doc["residual_path"])]) and len(written) == 2
    assert all(p.resolve().is_relative_to(out.resolve()) for p in written), written


def test_check_outputs_finds_clashes_between_inputs_and_between_options(tmp_path) -> None:
    files = [tmp_path / "a" / "x.mp4", tmp_path / "b" / "x.mp4"]
    with pytest.raises(UsageError, match=r"--render .*a/x\.mp4 and .*b/x\.mp4 would write the same file"):
        check_outputs({RENDER: str(tmp_path / "o" / "{name}.mp4")}, files)
    with pytest.raises(UsageError, match=r"--scores-tsv .*would write the same file .*x\.tsv"):
        check_outputs({SCORES_TSV: scores_tsv_template(tmp_path / "s")}, files)
    with pytest.raises(UsageError, match="-o and --residual name the same file"):
        check_outputs({SOURCE: "{name}.wav", RESIDUAL: "{name}.wav"}, files[:1])
    check_outputs({RENDER: str(tmp_path / "o" / "{name}.{ext}"), SOURCE: str(tmp_path / "{name}.{ext}.wav")},
                  [tmp_path / "a" / "x.mp4", tmp_path / "a" / "x.mkv"])  # {ext} tells them apart: accepted
    with pytest.raises(UsageError, match=r"unknown placeholder\(s\) \['label'\]"):
        check_outputs({RENDER: "{name}.{label}.mp4"}, files[:1])


def test_captions_and_report_pages_are_checked_like_the_other_outputs(tmp_path) -> None:
    files = [tmp_path / "a" / "x.mp4", tmp_path / "b" / "x.mp4"]
    for option in (VTT, AUDACITY, PAGE):
        with pytest.raises(UsageError, match=rf"{option} .*a/x\.mp4 and .*b/x\.mp4 would write the same file"):
            check_outputs({option: str(tmp_path / "o" / "{name}.txt")}, files)
        with pytest.raises(UsageError, match="needs a {name} placeholder"):
            check_outputs({option: str(tmp_path / "o.txt")}, files[:1], n_all=2)
        with pytest.raises(UsageError, match=r"unknown placeholder\(s\) \['label'\]"):
            check_outputs({option: "{name}.{label}.txt"}, files[:1])
    with pytest.raises(UsageError, match="--vtt and --audacity name the same file"):
        check_outputs({VTT: "{name}.txt", AUDACITY: "{name}.txt"}, files[:1])
    # a plain name without an extension is a folder, not an extensionless page; a template gets .html
    page, index = report_page_template(str(tmp_path / "myreport"))
    assert index.path == tmp_path / "myreport" / "index.html"
    assert fill(page, Path("v/clip.mp4")) == tmp_path / "myreport" / "clip.html"
    page, index = report_page_template(str(tmp_path / "r_{name}"))
    assert index is None and fill(page, Path("v/clip.mp4")) == tmp_path / "r_clip.html"
    page, index = report_page_template(str(tmp_path / "one.htm"))
    assert index is None and page == str(tmp_path / "one.htm")
    page, index = report_page_template(str(tmp_path / "rep{1}") + "/")
    assert index.path == tmp_path / "rep{1}" / "index.html"
    assert fill(page, Path("v/clip.mp4")) == tmp_path / "rep{1}" / "clip.html"  # a folder's braces kept literal
    # an input named index.mp4 would overwrite the folder's index: refused
    with pytest.raises(UsageError, match=r"index\.mp4 would be .*index\.html, the file of the index"):
        check_outputs({PAGE: page}, [tmp_path / "v" / "index.mp4"], once={"the index": index.path})
    check_outputs({PAGE: page}, [tmp_path / "v" / "clip.mp4"], once={"the index": index.path})  # no clash: accepted
    assert fill(str(tmp_path / "o" / "{name}.vtt"), Path("in/....mp4")).parent == tmp_path / "o"  # sanitised


@pytest.mark.parametrize("options", [
    ["--render", "{out}/{{name}}.mp4"],
    ["--scores-tsv", "{out}/scores"],
    ["--vtt", "{out}/{{name}}.vtt"],
    ["--audacity", "{out}/{{name}}.txt", "--vtt", "{out}/{{name}}.vtt"],
    ["--render", "{out}/{{name}}.mp4", "--scores-tsv", "{out}/scores", "--force"],
])
def test_localize_refuses_two_inputs_writing_one_file_before_any_work(tmp_path, capsys, options) -> None:
    """``a/x.mp4`` and ``b/x.mp4`` with ``--render 'out/{name}.mp4'`` used to give exit 0 and one file,
    the second input's (or, without --force, a failure found only after the first was processed)."""
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write_video(tmp_path / "in" / sub / "x.mp4", duration=1.0)
    out = tmp_path / "out"
    argv = ["localize", str(tmp_path / "in"), "--model", str(tmp_path / "no-such-model"), "--device", "cpu",
            *[o.format(out=out) for o in options]]
    code = main(argv)
    _, err = capsys.readouterr()
    # refused as a usage error before the model is even loaded (the model path does not exist)
    assert code == 2 and "would write the same file" in err and "in/a/x.mp4" in err and "in/b/x.mp4" in err, err
    assert not out.exists()


@pytest.mark.parametrize("options", [["-o", "{out}/"], ["-o", "{out}/{{name}}.html", "--vtt", "{out}/{{name}}.vtt"]])
def test_report_refuses_two_inputs_writing_one_file_before_any_work(tmp_path, capsys, options) -> None:
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write_video(tmp_path / "in" / sub / "x.mp4", duration=1.0)
    out = tmp_path / "out"
    code = main(["report", str(tmp_path / "in"), "--model", str(tmp_path / "no-such-model"), "--device", "cpu",
                 *[o.format(out=out) for o in options]])
    _, err = capsys.readouterr()
    assert code == 2 and "would write the same file" in err and "in/a/x.mp4" in err and "in/b/x.mp4" in err, err
    assert not out.exists()


def test_the_separation_method_is_resolved_once_per_run(tmp_path, monkeypatch, capsys) -> None:
    """``--method auto`` is decided once for the run, not per input; every input runs what it chose."""
    import avscene.separation.registry as registry

    ckpt = tiny_checkpoint(tmp_path / "ckpt")  # no mask network, no dictionaries: the one method it runs is ncp
    (tmp_path / "in").mkdir()
    for k in range(3):
        write_audio(tmp_path / "in" / f"{k}.wav", duration=1.0)
    asked: list[str] = []
    real = registry.resolve_method

    def counted(requested, *args, **kwargs):
        asked.append(str(getattr(requested, "value", requested)))
        return real(requested, *args, **kwargs)

    monkeypatch.setattr(registry, "resolve_method", counted)
    monkeypatch.setattr("avscene.tasks.separate.resolve_method", counted)
    code = main(["separate", str(tmp_path / "in"), "--label", "a", "-o", str(tmp_path / "out" / "{name}.wav"),
                 "--model", str(ckpt), "--device", "cpu", "--components", "4", "--jsonl", "-"])
    out, err = capsys.readouterr()
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["method"] for r in records] == ["ncp"] * 3
    assert asked.count("auto") == 1, asked  # once for the run; the inputs run the method it chose
