"""Checkpoints in Hugging Face Hub format: a folder (local, or a Hub snapshot in the HF cache) of

* ``config.json``: ``{"format_version": 1, "model": ModelConfig.to_dict(), "labels": [...],
  "preprocess": PreprocessConfig.to_dict()}`` + optional ``"training"``. Nothing is pickled.
* ``model.safetensors``: the state dict, read with safetensors only (never ``torch.load``).
* ``README.md``: the model card (:func:`avscene.hub_card.card_text`), written only if missing.

:func:`save_folder`, :func:`resolve`, :func:`read_config` and :func:`load_state_dict` know
nothing about the network; :func:`save_pretrained` / :func:`load_pretrained` build and check an
``AVSceneNet``. torch, safetensors and huggingface_hub are imported lazily (fast ``--help``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING

from avscene.config import PreprocessConfig
from avscene.errors import CheckpointError, ConfigError, OutputError, UsageError
from avscene.results import json_text
from avscene.separation.parts import FILES as SEPARATION_FILES

if TYPE_CHECKING:
    from torch import Tensor

    from avscene.nn.model import AVSceneNet, ModelConfig
    from avscene.separation.parts import SeparationParts

FORMAT_VERSION = 1  # bump when config.json changes incompatibly; readers accept <= this
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
# all a download fetches from a repo: the format's files and separation's optional ones
HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, *SEPARATION_FILES)
CONFIG_KEYS = ("format_version", "model", "labels", "preprocess", "training", "separation")
REQUIRED_CONFIG_KEYS = ("format_version", "model", "labels", "preprocess")
# The Hub's ``org/name`` form; anything else that is not an existing folder is a typo.
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_LIST_SHOWN = 5  # names shown per category in a mismatch message
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


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference, with everything that travelled with its weights."""

    model: AVSceneNet  # eval mode, on the requested device
    config: ModelConfig
    labels: tuple[str, ...]  # class names, index i = output i
    preprocess: PreprocessConfig
    model_id: str  # repo id or local path, as given
    revision: str | None  # requested revision, None for the default
    folder: Path  # folder the files were read from
    commit: str | None = None  # Hub commit sha the weights came from; None for a local folder
    # the mask network, dictionaries and default method of separation; None: not read (load_pretrained
    # reads the classifier only; avscene.separation.checkpoint.with_parts reads them, as load_model does)
    separation: SeparationParts | None = None


# --- low level: files --------------------------------------------------------------


def default_file_mode(path: Path) -> None:
    """Give ``path`` the permissions a plain ``open()`` would (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_folder(folder: str | Path, *, config: dict, state_dict: dict[str, Tensor], card: str | None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (if missing) ``README.md`` into ``folder``.

    Files are written into a temporary folder next to ``folder``, then renamed into
    place (the whole folder if new, else file by file), so a crash never leaves a
    half-written file. Other files of an existing ``folder``, and its model card, are kept.

    Args:
        folder: destination; created if missing.
        config: the ``config.json`` content (JSON-serialisable).
        state_dict: tensor name -> tensor; saved contiguous, on CPU.
        card: model card text, or None for no card.

    Raises:
        OutputError: ``folder`` exists and is not a folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} exists and is not a folder; choose another destination")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state_dict.items()}
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # not tempfile.mkdtemp: its 0700 mode would stick to the renamed folder
    try:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        default_file_mode(tmp / WEIGHTS_NAME)  # safetensors creates it 0600
        (tmp / CONFIG_NAME).write_text(json_text(config, indent=2) + "\n", encoding="utf-8")
        if card is not None and not (folder / CARD_NAME).exists():
            (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        if not folder.exists():
            tmp.rename(folder)
            return folder
        for name in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME):
            if (tmp / name).exists():
                os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_config(folder: str | Path) -> dict:
    """Read and validate ``config.json``: unknown top-level keys warn, everything else wrong raises.

    Raises:
        CheckpointError: missing file or key, invalid JSON, a newer ``format_version``.
    """
    path = Path(folder) / CONFIG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path} is missing; a checkpoint folder needs {CONFIG_NAME} and {WEIGHTS_NAME}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}; re-download or re-save the checkpoint") from e
    except _NonStandardJSON as e:
        raise CheckpointError(f"{path} is not valid JSON ({e} is not a JSON value); fix the file or "
                              "re-download the checkpoint") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
            "fix the file or re-download the checkpoint"
        ) from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(data).__name__}")
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks required key(s) {missing}; save checkpoints with save_pretrained")
    version = data["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: format_version must be a positive integer, found {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version} but this avscene reads up to {FORMAT_VERSION}: "
            "upgrade avscene (pip install -U avscene)"
        )
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        warnings.warn(f"{path}: ignoring unknown config keys {unknown}", stacklevel=2)
    _check_types(data, path)
    return data


class _NonStandardJSON(ValueError):
    """``NaN`` / ``Infinity`` in a JSON file: Python's extension, not JSON."""



def _refuse_constant(word: str) -> None:
    raise _NonStandardJSON(word)


def _check_types(data: dict, path: Path) -> None:
    if not isinstance(data["model"], dict) or not isinstance(data["preprocess"], dict):
        raise CheckpointError(f"{path}: 'model' and 'preprocess' must be JSON objects")
    labels = data["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise CheckpointError(f"{path}: 'labels' must be a list of class names (strings)")
    if data.get("training") is not None and not isinstance(data["training"], dict):
        raise CheckpointError(f"{path}: 'training' must be a JSON object or absent")


def load_state_dict(folder: str | Path) -> dict[str, Tensor]:
    """Read ``model.safetensors`` onto the CPU with safetensors (never pickle).

    Raises:
        CheckpointError: the file is missing, truncated or corrupted.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; a checkpoint folder needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{path} is truncated or corrupted ({e}); delete it and download or save the checkpoint again"
        ) from e


# --- low level: where the files are -------------------------------------------------


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
        _check_folder(path, model_id_or_path)
        return ResolvedCheckpoint(folder=path, model_id=model_id_or_path, revision=None, commit=None)
    if path.exists():
        raise CheckpointError(f"{model_id_or_path} is a file; pass the folder holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    if not _REPO_ID_RE.match(model_id_or_path):
        raise CheckpointError(
            f"{model_id_or_path!r} is neither an existing folder nor a Hugging Face repo id (org/name); "
            "check the path or the repo id"
        )
    offline = offline or _env_offline()
    folder = Path(_download(model_id_or_path, revision=revision, offline=offline, cache_dir=cache_dir,
                            timeout=hub_timeout))
    _check_folder(folder, model_id_or_path)
    commit = folder.name if _COMMIT_RE.match(folder.name) else None
    return ResolvedCheckpoint(folder=folder, model_id=model_id_or_path, revision=revision, commit=commit)


def _env_offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, at its import.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _check_folder(folder: Path, model_id: str) -> None:
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{model_id} ({folder}) is not an avscene checkpoint: missing {', '.join(missing)}; "
            "save one with avscene.hub.save_pretrained"
        )


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
            f"({cache}): {_first_line(e)}; check your network connection (or HF_ENDPOINT) and retry"
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
        return CheckpointError(f"{repo_id!r} is not a valid Hugging Face repo id: {_first_line(e)}")
    if isinstance(e, HfHubHTTPError):
        return CheckpointError(f"the Hub refused {at}: {_first_line(e)}; retry later, or pass --offline if cached")
    if _is_network_error(e):
        return CheckpointError(
            f"network error while fetching {at} ({type(e).__name__}: {_first_line(e)}); "
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


def _is_network_error(e: Exception) -> bool:
    # huggingface_hub releases raise requests, httpx or httpx2 transport errors.
    module = type(e).__module__.split(".")[0]
    return isinstance(e, (ConnectionError, TimeoutError)) or module in {"requests", "urllib3", "httpx", "httpx2"}


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(e).__name__


# --- model layer ----------------------------------------------------------------------


def checkpoint_config(
    config: ModelConfig, *, labels: Sequence[str], preprocess: PreprocessConfig, training: dict | None = None
) -> dict:
    """The ``config.json`` content: format version, model config, labels, preprocessing, training.

    Raises:
        ConfigError: the labels do not name the model's classes one-to-one.
    """
    labels = list(labels)
    if len(labels) != config.num_classes:
        raise ConfigError(f"{len(labels)} labels given for a model with num_classes={config.num_classes}")
    if len(set(labels)) != len(labels) or not all(isinstance(x, str) and x for x in labels):
        raise ConfigError(f"labels must be distinct non-empty strings, got {labels}")
    out = {"format_version": FORMAT_VERSION, "model": config.to_dict(), "labels": labels,
           "preprocess": preprocess.to_dict()}
    return out if training is None else {**out, "training": training}


def save_pretrained(
    model: AVSceneNet,
    folder: str | Path,
    *,
    labels: Sequence[str],
    preprocess: PreprocessConfig,
    training: dict | None = None,
    card: str | None = None,
) -> Path:
    """Save a model as a Hub-ready folder (config.json + model.safetensors + README.md).

    Args:
        model: the network; its ``cfg`` becomes ``config.json["model"]``.
        folder: destination (created; existing weights and config are replaced).
        labels: class names, one per output.
        preprocess: how inputs were made; it travels with the weights.
        training: optional JSON record of the training run (command, data, metrics).
        card: model card text (default: :func:`card_text`); an existing README.md is kept.
    """
    cfg = model.cfg
    config = checkpoint_config(cfg, labels=labels, preprocess=preprocess, training=training)
    if card is None:
        from avscene.hub_card import card_text

        card = card_text(cfg, labels=labels, preprocess=preprocess, training=training, title=Path(folder).name)
    return save_folder(folder, config=config, state_dict=model.state_dict(), card=card)


def load_pretrained(
    model_id_or_path: str,
    *,
    revision: str | None = None,
    offline: bool = False,
    device: str = "cpu",
    cache_dir: str | None = None,
    hub_timeout: float | None = None,
) -> LoadedModel:
    """Load a checkpoint from a folder or a Hub repo, strictly.

    The tensors' names and shapes are checked against the network built from
    ``config.json`` before any weight is copied.

    Args:
        model_id_or_path, revision, offline, cache_dir, hub_timeout: as for :func:`resolve`.
        device: torch device for the model, e.g. ``"cpu"`` or ``"cuda"``.

    Raises:
        CheckpointError: missing, corrupted, or inconsistent checkpoint.
        UsageError: unusable device.
    """
    from avscene.nn.model import AVSceneNet, ModelConfig

    resolved = resolve(model_id_or_path, revision=revision, offline=offline, cache_dir=cache_dir,
                       hub_timeout=hub_timeout)
    folder = resolved.folder
    raw = read_config(folder)
    where = f"{folder / CONFIG_NAME}"
    try:
        cfg = ModelConfig.from_dict(raw["model"])
        preprocess = PreprocessConfig.from_dict(raw["preprocess"])
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: invalid config: {e}; fix the file or re-save the checkpoint") from e
    labels = tuple(raw["labels"])
    if len(labels) != cfg.num_classes or len(set(labels)) != len(labels):
        raise CheckpointError(
            f"{where} lists {len(labels)} labels ({len(set(labels))} distinct) but model.num_classes is "
            f"{cfg.num_classes}; the labels must name the model's outputs one-to-one"
        )
    state = load_state_dict(folder)
    model = AVSceneNet(cfg)
    check_state_dict(model.state_dict(), state, name=model_id_or_path)
    model.load_state_dict(state, strict=True)
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise UsageError(f"cannot put the model on device {device!r} ({e}); use --device cpu") from e
    model.eval()
    return LoadedModel(
        model=model, config=cfg, labels=labels, preprocess=preprocess,
        model_id=model_id_or_path, revision=revision, folder=folder, commit=resolved.commit,
    )


def write_config(folder: Path, config: dict) -> None:
    """Replace ``folder/config.json`` with ``config``, atomically."""
    from avscene.io.writers import atomic_write_text

    atomic_write_text(folder / CONFIG_NAME, json_text(config, indent=2) + "\n", force=True)


def check_state_dict(expected: dict[str, Tensor], found: dict[str, Tensor], *, name: str) -> None:
    """Raise if ``found`` (the checkpoint) differs from ``expected`` (the model) in names, shapes or
    dtypes, or holds a NaN or an infinity.

    A dtype other than the network's would be cast silently by ``load_state_dict`` (int64
    weights change the predictions), and one non-finite weight makes every score NaN.

    Raises:
        CheckpointError: listing missing and unexpected tensors, shape and dtype mismatches and
            tensors with non-finite values.
    """
    import torch

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    common = sorted(set(expected) & set(found))
    mismatched = [
        f"{k}: checkpoint {tuple(found[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in common if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    dtypes = [f"{k}: checkpoint {str(found[k].dtype).removeprefix('torch.')} vs model "
              f"{str(expected[k].dtype).removeprefix('torch.')}"
              for k in common if found[k].dtype != expected[k].dtype]
    non_finite = [k for k in common if found[k].is_floating_point() and not bool(torch.isfinite(found[k]).all())]
    problems = [_listing(what, items) for what, items in
                (("missing tensors", missing), ("unexpected tensors", unexpected), ("shape mismatch", mismatched),
                 ("dtype mismatch", dtypes), ("NaN or infinite values", non_finite))
                if items]
    if problems:
        raise CheckpointError(
            f"checkpoint {name} does not match its config: {'; '.join(problems)}; "
            f"fix {CONFIG_NAME} or save the checkpoint again with save_pretrained"
        )


def _listing(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_SHOWN])
    more = f", … ({len(items) - _LIST_SHOWN} more)" if len(items) > _LIST_SHOWN else ""
    return f"{what} ({len(items)}) [{shown}{more}]"
