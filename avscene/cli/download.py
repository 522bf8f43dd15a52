"""``avscene download``: fetch a Hub checkpoint into the Hugging Face cache for offline use."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from avscene.cli._options import HubTimeoutOpt

EPILOG = """Examples:

  avscene download org/avscene-model

  avscene download org/avscene-model --revision v1 && avscene classify clip.mp4 -m org/avscene-model --revision v1 --offline
"""


def download_cmd(
    repo_id: Annotated[str, typer.Argument(help="Hub repo id, org/name.")],
    revision: Annotated[Optional[str], typer.Option(help="Branch, tag or commit.")] = None,
    cache_dir: Annotated[Optional[str], typer.Option(help="HF cache folder (default: HF_HUB_CACHE).")] = None,
    verify: Annotated[bool, typer.Option(help="Also load the weights strictly to check them.")] = True,
    hub_timeout: HubTimeoutOpt = None,
) -> int:
    """Download a checkpoint (config, weights, card) so later runs work with --offline."""
    from avscene.checkpoint.load import load_pretrained
    from avscene.checkpoint.resolve import resolve

    res = resolve(repo_id, revision=revision, offline=False, cache_dir=cache_dir, hub_timeout=hub_timeout)
    if verify:
        load_pretrained(str(res.folder))
    print(f"{repo_id}{'@' + revision if revision else ''} → {res.folder}")
    return 0
