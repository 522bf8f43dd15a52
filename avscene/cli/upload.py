"""``avscene upload``: publish a trained checkpoint folder to the Hugging Face Hub."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from avscene.cli._options import HubTimeoutOpt
from avscene.results import json_text

EPILOG = """Examples:

  avscene upload runs/av org/avscene-model

  avscene upload runs/av org/avscene-model --private --revision v2 --message "60 epochs, bag mixing"

  avscene upload runs/av org/avscene-model --json | jq -r .commit
"""


def upload_cmd(
    folder: Annotated[str, typer.Argument(help="Checkpoint folder (config.json, model.safetensors, README.md).")],
    repo_id: Annotated[str, typer.Argument(help="Hub repo id, ORG/NAME (created if missing).")],
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    revision: Annotated[Optional[str], typer.Option("--revision", "--branch",
                                                    help="Branch to commit to (created if missing; default main).")] = None,
    message: Annotated[Optional[str], typer.Option(help="Commit message.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    hub_timeout: HubTimeoutOpt = None,
) -> int:
    """Publish a checkpoint that loads strictly: only the files `avscene download` fetches."""
    from pathlib import Path

    from avscene.errors import UsageError
    from avscene.checkpoint.push import upload

    if not Path(folder).is_dir():  # a mistyped runs/av reads as a Hub repo id: never go to the Hub for it
        raise UsageError(f"{folder}: no such folder; give the checkpoint folder to publish")
    res = upload(folder, repo_id, revision=revision, private=private, message=message, timeout=hub_timeout)
    if json_out:
        print(json_text(res.to_json()))
    else:
        print(f"{folder} → {res.repo_id}@{res.revision} ({res.commit[:12]}): {', '.join(res.files)}")
    return 0
