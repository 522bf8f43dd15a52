"""Publish a checkpoint folder to the Hugging Face Hub (``avscene upload``).

Only a folder that :func:`avscene.checkpoint.load.load_pretrained` loads strictly (separation
parts included) is published, and only the files a download fetches
(:data:`avscene.checkpoint.format.HUB_FILES`), so what is on the Hub is exactly what ``avscene
classify --model ORG/NAME`` will load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avscene.checkpoint.format import HUB_FILES
from avscene.checkpoint.load import load_pretrained
from avscene.checkpoint.resolve import REPO_ID_RE, env_offline, first_line, hub_timeout, is_network_error, is_timeout
from avscene.errors import CheckpointError, UsageError

DEFAULT_MESSAGE = "Upload avscene checkpoint"


@dataclass(frozen=True)
class UploadResult:
    """What was published. JSON: the fields below."""

    repo_id: str
    revision: str  # the branch the commit is on
    commit: str  # the new commit's sha
    url: str  # the commit's URL
    files: tuple[str, ...]  # paths committed
    private: bool

    def to_json(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit, "url": self.url,
                "files": list(self.files), "private": self.private}


def upload(folder: str | Path, repo_id: str, *, revision: str | None = None, private: bool = False,
           message: str | None = None, token: str | None = None, timeout: float | None = None) -> UploadResult:
    """Publish ``folder`` as ``repo_id`` (created if missing), on branch ``revision`` (default main).

    Raises:
        CheckpointError: the folder is not a checkpoint that loads strictly, or the Hub refused.
        UsageError: a bad repo id, or offline mode (``HF_HUB_OFFLINE``) is on.
    """
    folder = Path(folder)
    if not REPO_ID_RE.fullmatch(repo_id):
        raise UsageError(f"{repo_id!r} is not a Hub repo id: write ORG/NAME")
    if env_offline():
        raise UsageError("HF_HUB_OFFLINE is set: uploading needs the network; unset it to publish")
    load_pretrained(str(folder), device="cpu")  # strict: refuses what a download could not load
    files = tuple(name for name in HUB_FILES if (folder / name).is_file())
    branch = revision or "main"
    with hub_timeout(timeout) as seconds:
        try:
            return _publish(folder, repo_id, files, branch=branch, private=private,
                            message=message or DEFAULT_MESSAGE, token=token)
        except (CheckpointError, UsageError):
            raise
        except Exception as e:
            error = _upload_error(e, repo_id, seconds)
            if error is None:
                raise
            raise error from e


def _publish(folder: Path, repo_id: str, files: tuple[str, ...], *, branch: str, private: bool,
             message: str, token: str | None) -> UploadResult:
    from huggingface_hub import HfApi

    api = HfApi(token=token, library_name="avscene")
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if branch != "main":
        api.create_branch(repo_id, branch=branch, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=branch,
                             commit_message=message, allow_patterns=list(files))
    return UploadResult(repo_id=repo_id, revision=branch, commit=info.oid, url=info.commit_url,
                        files=files, private=private)


def _upload_error(e: Exception, repo_id: str, timeout: float) -> CheckpointError | None:
    """A one-line CheckpointError with its fix for a huggingface_hub failure; None if unexpected."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    if is_timeout(e):
        return CheckpointError(f"the Hugging Face Hub ({constants.ENDPOINT}) did not answer within {timeout:g} s "
                               f"while uploading to {repo_id}; check your connection (or HF_ENDPOINT) and retry, "
                               "or raise --hub-timeout")

    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        fix = "log in with `hf auth login` (a token with write access)" if status in (401, 403) else "retry later"
        return CheckpointError(f"the Hub refused the upload to {repo_id}: {first_line(e)}; {fix}")
    if is_network_error(e):
        return CheckpointError(f"could not reach the Hugging Face Hub ({constants.ENDPOINT}) to upload {repo_id}: "
                               f"{first_line(e)}; check your connection (or HF_ENDPOINT) and retry")
    return None


__all__ = ["DEFAULT_MESSAGE", "UploadResult", "upload"]
