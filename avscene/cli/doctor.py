"""``avscene doctor``: check the installation (decoders, OpenCV, torch, model, caches)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rich.console import Console
from rich.table import Table
from rich.text import Text

from avscene.cli._options import JsonOpt, ModelOpt
from avscene.results import json_text

EPILOG = """Examples:

  avscene doctor

  avscene doctor --json | jq '.checks[] | select(.ok | not)'

  avscene doctor --edge-model model.yml.gz

Exit code 0 when every required check passes (warnings are advisory), 1 otherwise.
"""

STATUS_STYLE = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}


def doctor_table(checks) -> Table:
    """One row per check; the fix column only when something failed."""
    with_fix = any(not c.ok for c in checks)
    t = Table("check", "status", "detail", *(["fix"] if with_fix else []))
    for c in checks:  # Text: paths and messages are shown as-is, never read as rich markup
        cells = [c.name, Text(c.status, style=STATUS_STYLE[c.status]), Text(c.detail)]
        t.add_row(*cells, *([Text(c.fix)] if with_fix else []))
    return t


# doctor reports a bad model file as a failed check, so its option is not validated up front
DoctorEdgeModelOpt = Annotated[
    Optional[Path],
    typer.Option("--edge-model", exists=True, dir_okay=False,
                 help="Also check this structured-edge model file (model.yml.gz) and print its SHA-256."),
]


def doctor_cmd(json_out: JsonOpt = False, edge_model: DoctorEdgeModelOpt = None, model: ModelOpt = None) -> int:
    """Check that avscene can decode videos, load its model and write files here."""
    from avscene.doctor import exit_code, run_checks

    checks = run_checks(edge_model=edge_model, model=model)
    code = exit_code(checks)
    if json_out:
        doc = {"ok": code == 0, "checks": [c.to_json() for c in checks]}
        sys.stdout.write(json_text(doc, indent=2) + "\n")
    else:
        Console(soft_wrap=False).print(doctor_table(checks))
        failed = [c.name for c in checks if not c.ok and c.required]
        if failed:
            Console(stderr=True).print(f"{len(failed)} required check(s) failed: {', '.join(failed)}",
                                       style="red", markup=False, highlight=False)
    return code
