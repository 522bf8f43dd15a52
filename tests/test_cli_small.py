"""The smaller defects of issue 29's "Long batch runs", one test each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avscene.cli.app import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_scores_tsv_only_adds_the_tsv(capsys, tiny_model_dir, clips, tmp_path):
    """--scores-tsv used to give the JSON ``audio`` every class, not only the reported ones."""
    argv = ["localize", clips["av"], "-m", tiny_model_dir, "--label", "drum", "--json"]
    code, plain, err = run(capsys, *argv)
    assert code == 0, err
    code, with_tsv, err = run(capsys, *argv, "--scores-tsv", tmp_path / "s")
    assert code == 0, err
    assert json.loads(with_tsv) == json.loads(plain)
    header = (tmp_path / "s" / "av.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["onset", "offset", "violin", "drum", "car"]  # the TSV still has every class
