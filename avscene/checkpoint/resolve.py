"""Where a checkpoint's files are: a local folder as it is, or a Hugging Face Hub repo fetched
into the HF cache, with a limit on every Hub request (:func:`hub_timeout`, ``--hub-timeout``) and
huggingface_hub's failures turned into one-line :class:`~avscene.errors.CheckpointError` messages
that say what to do. huggingface_hub is imported on use (fast ``--help``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from avscene.checkpoint.format import CONFIG_NAME, HUB_FILES, WEIGHTS_NAME, check_folder
from avscene.errors import CheckpointError, UsageError

# The Hub's ``org/name`` form; anything else that is not an existing folder is a typo.
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# s: how long a Hub request may wait for the server (to connect, or for the next bytes) before the
# call fails; huggingface_hub's own default for its downloads, which it does not apply to every
# request (a server that accepts and never answers would hang the metadata call for ever).
DEFAULT_HUB_TIMEOUT = 10.0


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """Where a checkpoint's files are, and which revision they are."""

    folder: Path  # folder holding config.json and model.safetensors
    model_id: str  # what the user asked for: a repo id or a path
    revision: str | None  # requested revision (None: default branch, or a local folder)
    commit: str | None  # commit sha of the Hub snapshot; None for a local folder



def resolve(
    model_id_or_path: str, *, revision: str | None = None, offline: bool = False, cache_dir: str | None = None,
    hub_timeout: float | None = None,
) -> ResolvedCheckpoint:
    """Find a checkpoint folder: a local folder as-is, or a Hub repo fetched into the HF cache.

    With the Hub unreachable (and ``offline`` False), a cached snapshot is used if there is one.

    Args:
        model_id_or_path: a folder path, or a Hub repo id ``org/name``.
        revision: branch, tag or commit sha of a Hub repo (default: its main branch).
        offline: use the HF cache only, with no network access at all; also on when
            the ``HF_HUB_OFFLINE`` environment variable is truthy.
        cache_dir: HF cache folder (default ``HF_HUB_CACHE``: ``~/.cache/huggingface/hub``).
        hub_timeout: seconds each Hub request may wait for the server (see :func:`hub_timeout`;
            None: ``DEFAULT_HUB_TIMEOUT``).

    Raises:
        CheckpointError: not found locally, on the Hub or in the cache, or the Hub did not answer
            in time (the message says what to do).
        UsageError: a revision was given for a local folder, or a bad ``hub_timeout``.
    """
    path = Path(model_id_or_path).expanduser()
    if path.is_dir():
        if revision is not None:
            raise UsageError(f"--revision applies to Hub repo ids, but {model_id_or_path!r} is a local folder")
        check_folder(path, model_id_or_path)
        return ResolvedCheckpoint(folder=path, model_id=model_id_or_path, revision=None, commit=None)
    if path.exists():
        raise CheckpointError(f"{model_id_or_path} is a file; pass the folder holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    if not REPO_ID_RE.match(model_id_or_path):
        raise CheckpointError(
            f"{model_id_or_path!r} is neither an existing folder nor a Hugging Face repo id (org/name); "
            "check the path or the repo id"
        )
    offline = offline or env_offline()
    folder = Path(_download(model_id_or_path, revision=revision, offline=offline, cache_dir=cache_dir,
                            timeout=hub_timeout))
    check_folder(folder, model_id_or_path)
    commit = folder.name if _COMMIT_RE.match(folder.name) else None
    return ResolvedCheckpoint(folder=folder, model_id=model_id_or_path, revision=revision, commit=commit)


def env_offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, at its import.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@contextmanager
def hub_timeout(seconds: float | None) -> Iterator[float]:
    """Within the block, every huggingface_hub request fails after ``seconds`` without an answer.

    huggingface_hub's HTTP client has no timeout of its own, and some of its calls (the repo
    metadata before a snapshot download, the calls of an upload) pass ``timeout=None``: a
    server that accepts the connection and never answers would hang them. The block adds a
    request hook to huggingface_hub's shared client (public API: ``get_session``, and the httpx
    client's ``event_hooks``; whatever client factory a user set stays in force) that gives every
    request at most ``seconds`` (to connect, and between bytes read or written; shorter limits of
    huggingface_hub's own are kept), gives the downloads the same limit, and removes the hook and
    restores the limit at its end. A big file is not limited as a whole: only a server that stops
    sending is.

    Args:
        seconds: the limit; None: ``DEFAULT_HUB_TIMEOUT``.

    Yields:
        The limit in force.

    Raises:
        UsageError: ``seconds`` is not a positive number.
    """
    import math

    from huggingface_hub import constants, get_session

    seconds = DEFAULT_HUB_TIMEOUT if seconds is None else seconds
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"--hub-timeout must be a positive number of seconds, got {seconds!r}")
    previous_download = constants.HF_HUB_DOWNLOAD_TIMEOUT

    def limit(request) -> None:  # noqa: ANN001 - an httpx Request, before it is sent
        given = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {k: seconds if given.get(k) is None else min(given[k], seconds)
                                         for k in ("connect", "read", "write", "pool")}

    client = get_session()
    hooks = client.event_hooks
    client.event_hooks = {**hooks, "request": [*hooks.get("request", []), limit]}
    constants.HF_HUB_DOWNLOAD_TIMEOUT = seconds
    try:
        yield seconds
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = previous_download
        hooks = client.event_hooks
        client.event_hooks = {**hooks, "request": [h for h in hooks.get("request", []) if h is not limit]}


def _download(repo_id: str, *, revision: str | None, offline: bool, cache_dir: str | None,
              timeout: float | None = None) -> str:
    """snapshot_download of the checkpoint files, its errors turned into CheckpointErrors."""
    from huggingface_hub import snapshot_download

    import avscene

    with hub_timeout(timeout) as seconds:
        try:
            return snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=list(HUB_FILES),
                local_files_only=offline,  # passed explicitly: HF_HUB_OFFLINE is only read at import
                cache_dir=cache_dir,
                etag_timeout=seconds,
                library_name="avscene",
                library_version=avscene.__version__,
            )
        except Exception as e:
            error = _hub_error(e, repo_id=repo_id, revision=revision, offline=offline, cache_dir=cache_dir,
                               timeout=seconds)
            if error is None:
                raise
            raise error from e


def _hub_error(
    e: Exception, *, repo_id: str, revision: str | None, offline: bool, cache_dir: str | None,
    timeout: float = DEFAULT_HUB_TIMEOUT,
) -> CheckpointError | None:
    """The CheckpointError (with its fix) for a huggingface_hub failure, None if unexpected."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f"{repo_id}@{revision}" if revision else repo_id
    cache = cache_dir or constants.HF_HUB_CACHE
    if is_timeout(e):
        return CheckpointError(
            f"the Hugging Face Hub ({constants.ENDPOINT}) did not answer within {timeout:g} s while fetching "
            f"{at}; check your connection (or HF_ENDPOINT), raise --hub-timeout, or pass --offline if it is cached"
        )
    if isinstance(e, LocalEntryNotFoundError) and offline:
        return CheckpointError(
            f"{at} is not in the Hugging Face cache ({cache}); run once online: "
            f"`avscene download {repo_id}` or `hf download {repo_id}`, or drop --offline"
        )
    if isinstance(e, LocalEntryNotFoundError):  # the Hub was unreachable and the cache has no copy
        return CheckpointError(
            f"could not reach the Hugging Face Hub ({constants.ENDPOINT}) and {at} is not in the cache "
            f"({cache}): {first_line(e)}; check your network connection (or HF_ENDPOINT) and retry"
        )
    if isinstance(e, GatedRepoError):
        return CheckpointError(f"{repo_id} is gated: accept its terms on the Hub, then log in with `hf auth login`")
    if isinstance(e, RepositoryNotFoundError):
        return CheckpointError(
            f"{repo_id} is neither a local folder nor a repo on the Hugging Face Hub ({constants.ENDPOINT}); "
            "check the spelling, or log in with `hf auth login` if it is private"
        )
    if isinstance(e, RevisionNotFoundError):
        return CheckpointError(f"revision {revision!r} does not exist in {repo_id}; pass a branch, tag or commit sha")
    if isinstance(e, HFValidationError):
        return CheckpointError(f"{repo_id!r} is not a valid Hugging Face repo id: {first_line(e)}")
    if isinstance(e, HfHubHTTPError):
        return CheckpointError(f"the Hub refused {at}: {first_line(e)}; retry later, or pass --offline if cached")
    if is_network_error(e):
        return CheckpointError(
            f"network error while fetching {at} ({type(e).__name__}: {first_line(e)}); "
            "check your connection, or pass --offline if the model is cached"
        )
    return None


def is_timeout(e: BaseException) -> bool:
    """Whether ``e``, or an exception it was raised from, is a network timeout (any HTTP library)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        http = type(e).__module__.split(".")[0] in {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}
        if isinstance(e, TimeoutError) or (http and "Timeout" in type(e).__name__):
            return True
        e = e.__cause__ or e.__context__
    return False


def is_network_error(e: Exception) -> bool:
    # huggingface_hub releases raise requests, httpx or httpx2 transport errors.
    module = type(e).__module__.split(".")[0]
    return isinstance(e, (ConnectionError, TimeoutError)) or module in {"requests", "urllib3", "httpx", "httpx2"}


def first_line(e: BaseException) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(e).__name__
