"""``avscene doctor``: check that this installation can decode, load the model and write files.

Every check is a function returning a frozen :class:`Check`; :func:`run_checks` runs them
all (a check that crashes becomes a failed check, never an exception) and
:func:`exit_code` turns the list into the command's exit status. Nothing here touches the
network: the Hugging Face checks only read the environment and the cache folder.

Required checks (a failure means avscene cannot work): Python, PyAV and its H.264/AAC
decoders, OpenCV with ``ximgproc``, torch, torchvision, the bundled model, the temp
folder, and the ``--edge-model`` file when one is given. Advisory checks (a failure is a
warning): torchaudio (only training imports it, for the pitch-shift augmentation of
``dsp/timbre.py``), the Hugging Face cache and settings (only Hub models need them).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

MIN_PYTHON = (3, 10)
REQUIRED_DECODERS = {"h264": "H.264 video", "aac": "AAC audio"}  # what avbench-style clips need
FFMPEG_LIBRARIES = ("libavcodec", "libavformat", "libavutil", "libswresample", "libswscale")
# torchvision 0.N pairs with torch 2.(N - 15): 0.15 <-> 2.0, ..., 0.26 <-> 2.11.
TORCHVISION_MINOR_OFFSET = 15
CACHE_SIZE_MAX_FILES = 100_000  # stop counting the HF cache size after this many files
HASH_CHUNK = 1 << 20  # bytes read at a time for SHA-256
TRUTHY = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of boolean env variables
# What torchaudio serves (dsp/timbre.py's pitch shift, imported by train/augment.py only).
TORCHAUDIO_USE = ("needed only by `avscene train` (pitch-shift augmentation); classify, localize, "
                  "separate and report do not use it")


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str  # short id, e.g. "pyav"
    ok: bool  # passed
    detail: str  # what was found (versions, paths, sizes)
    fix: str = ""  # how to fix a failure; empty when ok
    required: bool = True  # False: a failure is a warning and leaves the exit code 0

    @property
    def status(self) -> str:
        """``ok``, ``FAIL`` (required) or ``warn`` (advisory)."""
        return "ok" if self.ok else "FAIL" if self.required else "warn"

    def to_json(self) -> dict:
        return {**asdict(self), "status": self.status}


def _requirement(dist: str) -> str:
    """The requirement avscene declares for ``dist`` (e.g. ``av>=12``), for pip commands."""
    try:
        reqs = importlib.metadata.requires("avscene") or []
    except importlib.metadata.PackageNotFoundError:
        reqs = []
    for r in reqs:
        name = re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]
        if name.lower().replace("_", "-") == dist.lower().replace("_", "-") and "extra ==" not in r:
            return r.split(";")[0].strip()
    return dist


def _missing(name: str, module: str, dist: str, e: BaseException, *, required: bool = True) -> Check:
    return Check(name, False, f"cannot import {module} ({type(e).__name__}: {e})",
                 f"pip install '{_requirement(dist)}'", required)


def check_python() -> Check:
    """Python version (avscene needs 3.10 or newer)."""
    import avscene

    major, minor, micro = sys.version_info[:3]
    detail = f"Python {major}.{minor}.{micro} ({sys.executable}); avscene {avscene.__version__}"
    if (major, minor) < MIN_PYTHON:
        return Check("python", False, detail, f"use Python {'.'.join(map(str, MIN_PYTHON))} or newer")
    return Check("python", True, detail)


def check_pyav() -> Check:
    """PyAV imports; reports its FFmpeg library versions."""
    try:
        import av
    except ImportError as e:
        return _missing("pyav", "av", "av", e)
    libs = ", ".join(f"{k} {'.'.join(map(str, av.library_versions[k]))}"
                     for k in FFMPEG_LIBRARIES if k in av.library_versions)
    ffmpeg = getattr(av, "ffmpeg_version_info", "?")
    return Check("pyav", True, f"PyAV {av.__version__}, FFmpeg {ffmpeg} ({libs})")


def check_decoders() -> Check:
    """FFmpeg (through PyAV) can decode H.264 video and AAC audio."""
    try:
        import av
    except ImportError as e:
        return _missing("decoders", "av", "av", e)
    missing = []
    for codec, what in REQUIRED_DECODERS.items():
        try:
            av.Codec(codec, "r")
        except (av.error.FFmpegError, ValueError):  # ValueError: unknown codec in this build
            missing.append(f"{codec} ({what})")
    if missing:
        return Check("decoders", False, f"no decoder for {', '.join(missing)} in this FFmpeg",
                     "install the PyPI wheel of PyAV, which bundles FFmpeg with these decoders: "
                     f"pip install --force-reinstall '{_requirement('av')}'")
    return Check("decoders", True, ", ".join(f"{c} ({w})" for c, w in REQUIRED_DECODERS.items()))


def check_opencv() -> Check:
    """OpenCV imports with the contrib module ``ximgproc`` (EdgeBoxes, structured edges)."""
    fix = ("pip uninstall -y opencv-python opencv-python-headless && "
           f"pip install --force-reinstall '{_requirement('opencv-contrib-python')}' "
           "(the plain opencv-python wheel lacks ximgproc and shadows the contrib one)")
    try:
        import cv2
    except ImportError as e:
        return Check("opencv", False, f"cannot import cv2 ({type(e).__name__}: {e})", fix)
    ximgproc = getattr(cv2, "ximgproc", None)
    if ximgproc is None or not hasattr(ximgproc, "createEdgeBoxes"):
        return Check("opencv", False, f"OpenCV {cv2.__version__} has no cv2.ximgproc.createEdgeBoxes", fix)
    return Check("opencv", True, f"OpenCV {cv2.__version__} with ximgproc (EdgeBoxes)")


def check_torch() -> Check:
    """torch imports; reports the devices ``--device auto`` can use and the thread count."""
    try:
        import torch
    except ImportError as e:
        return _missing("torch", "torch", "torch", e)
    devices = []
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        devices.append(f"cuda ({torch.cuda.device_count()}x {', '.join(names)})")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    detail = (f"torch {torch.__version__}; devices: {', '.join(devices)} (auto picks {devices[0].split()[0]}); "
              f"{torch.get_num_threads()} CPU threads")
    return Check("torch", True, detail)


def expected_companion(torch_version: str, dist: str) -> str:
    """The ``major.minor`` of torchvision or torchaudio built for ``torch_version``.

    >>> expected_companion("2.11.0+cu130", "torchvision")
    '0.26'
    """
    major, minor = (int(x) for x in torch_version.split("+")[0].split(".")[:2])
    if dist == "torchvision":
        return f"0.{minor + TORCHVISION_MINOR_OFFSET}" if major == 2 else "?"
    return f"{major}.{minor}"


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def _local(version: str) -> str:
    return version.split("+")[1] if "+" in version else ""


def check_companion(dist: str, *, required: bool, use: str = "") -> Check:
    """``dist`` (torchvision or torchaudio) imports and was built for the installed torch; ``use``,
    what avscene needs it for, ends the detail line."""
    try:
        import torch
    except ImportError as e:
        return _missing(dist, "torch", "torch", e, required=required)
    want = expected_companion(torch.__version__, dist)
    fix = f"pip install '{dist}=={want}.*' matching torch {torch.__version__} (same index URL as torch)"
    suffix = f"; {use}" if use else ""
    try:
        mod = __import__(dist)
    except Exception as e:  # noqa: BLE001 - a mismatched build fails with OSError/RuntimeError too
        return Check(dist, False, f"cannot import {dist} ({type(e).__name__}: {e}){suffix}", fix, required)
    have = mod.__version__
    if want != "?" and _major_minor(have) != want:
        return Check(dist, False, f"{dist} {have} does not match torch {torch.__version__} "
                     f"(expects {want}.x){suffix}", fix, required)
    if _local(have) != _local(torch.__version__):
        return Check(dist, False, f"{dist} {have} and torch {torch.__version__} are different builds "
                     f"(+{_local(have) or 'none'} vs +{_local(torch.__version__) or 'none'}){suffix}", fix, required)
    return Check(dist, True, f"{dist} {have} matches torch {torch.__version__}{suffix}", "", required)


def check_bundled_model(model: str | None = None) -> Check:
    """The model the commands use (``--model`` / ``$AVSCENE_MODEL_ID``, else the bundled one or
    ``$AVSCENE_MODEL``) is present and loads strictly."""
    from avscene.errors import AvsceneError

    fix = ("check --model / AVSCENE_MODEL_ID (a folder, or a Hub id with `avscene download` run first)" if model else
           "reinstall avscene (pip install --force-reinstall avscene), or unset AVSCENE_MODEL")
    try:
        from avscene.tasks.models import default_model_path

        path = model or default_model_path()
    except AvsceneError as e:
        return Check("model", False, str(e), fix)
    try:
        from avscene.checkpoint.load import load_pretrained

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = load_pretrained(str(path), device="cpu")
    except AvsceneError as e:
        return Check("model", False, f"{path}: {e}", fix)
    cfg = loaded.config
    detail = f"{path}: {cfg.variant} variant, {len(loaded.labels)} classes"
    if caught:
        detail += f"; warnings: {'; '.join(str(w.message) for w in caught)}"
    return Check("model", True, detail)


def _dir_size(path: Path) -> tuple[int, bool]:
    """Total bytes of the files under ``path`` and whether the count was complete."""
    total, n = 0, 0
    for root, _, files in os.walk(path):
        for f in files:
            n += 1
            if n > CACHE_SIZE_MAX_FILES:
                return total, False
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                continue
    return total, True


def _writable(folder: Path) -> str | None:
    """None if a file can be created in ``folder`` (or in the parent that would hold it), else why."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"none of {folder}'s parents exist"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".avscene-doctor-"):
            pass
    except OSError as e:
        return f"cannot create a file in {probe} ({e.strerror or e})"
    return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def check_hf_cache(cache_dir: str | Path | None = None) -> Check:
    """The Hugging Face cache folder: its path, whether it is writable, and its size."""
    if cache_dir is None:
        try:
            from huggingface_hub import constants
        except ImportError as e:
            return _missing("hf-cache", "huggingface_hub", "huggingface_hub", e, required=False)
        cache_dir = constants.HF_HUB_CACHE
    path = Path(cache_dir).expanduser()
    problem = _writable(path)
    if problem:
        return Check("hf-cache", False, f"{path}: not writable: {problem}",
                     f"set HF_HUB_CACHE (or HF_HOME) to a writable folder, or make {path} writable; "
                     "only Hub models (--model org/name) need it", required=False)
    if not path.exists():
        return Check("hf-cache", True, f"{path} (not created yet; writable)", required=False)
    size, complete = _dir_size(path)
    return Check("hf-cache", True, f"{path} (writable, {'' if complete else '>= '}{_size(size)})",
                 required=False)


def check_hf_settings() -> Check:
    """Offline mode and endpoint, as the next run will read them (no network access)."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in TRUTHY
    endpoint = os.environ.get("HF_ENDPOINT", "").strip()
    mode = "offline (HF_HUB_OFFLINE): Hub models come from the cache only" if offline else "online"
    detail = f"{mode}; endpoint {endpoint or 'https://huggingface.co (default)'}"
    if endpoint and not re.match(r"^https?://[^/\s]+", endpoint):
        return Check("hf-settings", False, detail, f"HF_ENDPOINT={endpoint!r} is not an http(s) URL; "
                     "unset it or set e.g. https://huggingface.co", required=False)
    return Check("hf-settings", True, detail, required=False)


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_edge_model(path: str | Path) -> Check:
    """A structured-edge model file (``--edge-model``): readable, its SHA-256, loadable by OpenCV.

    The reference model.yml.gz of opencv_extra publishes no checksum: the SHA-256 is printed
    so that users can compare copies.
    """
    from avscene.proposals.edge_model import EDGE_MODEL_URL, edge_model_problem

    path = Path(path)
    fix = f"download OpenCV's model.yml.gz ({EDGE_MODEL_URL}) and pass its path, or drop --edge-model"
    if not path.is_file():
        return Check("edge-model", False, f"{path}: no such file", fix)
    try:
        digest = sha256_of(path)
    except OSError as e:
        return Check("edge-model", False, f"{path}: cannot read it ({e.strerror or e})", fix)
    problem = edge_model_problem(path)  # reads the nodes first: a bad file could crash OpenCV
    detail = f"{path}: sha256 {digest} (opencv_extra publishes no checksum to compare with)"
    if problem:
        return Check("edge-model", False, f"{detail}; {problem}", fix)
    return Check("edge-model", True, detail)


def check_temp_dir() -> Check:
    """The temporary folder (``TMPDIR``) accepts files."""
    folder = Path(tempfile.gettempdir())
    problem = _writable(folder) if folder.is_dir() else f"{folder} is not a folder"
    if problem:
        return Check("temp-dir", False, f"{folder}: {problem}",
                     "set TMPDIR to a writable folder with free space")
    return Check("temp-dir", True, f"{folder} (writable)")


def _guarded(name: str, fn: Callable[[], Check]) -> Check:
    """Run one check; an unexpected exception fails that check instead of the command."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - doctor must report, not crash
        if os.environ.get("AVSCENE_DEBUG"):
            raise
        return Check(name, False, f"the check itself crashed ({type(e).__name__}: {e})",
                     "rerun with AVSCENE_DEBUG=1 for the traceback and report it")


def run_checks(*, edge_model: str | Path | None = None, cache_dir: str | Path | None = None,
               model: str | None = None) -> list[Check]:
    """Run every check, in a fixed order.

    Args:
        model: the model to check (``--model``); None: the bundled one.
        edge_model: a structured-edge model file to check too (``--edge-model``).
        cache_dir: Hugging Face cache folder; None: huggingface_hub's ``HF_HUB_CACHE``.

    Returns:
        One :class:`Check` per check; never raises (unless ``AVSCENE_DEBUG`` is set).
    """
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("pyav", check_pyav),
        ("decoders", check_decoders),
        ("opencv", check_opencv),
        ("torch", check_torch),
        ("torchvision", lambda: check_companion("torchvision", required=True)),
        ("torchaudio", lambda: check_companion("torchaudio", required=False, use=TORCHAUDIO_USE)),
        ("model", lambda: check_bundled_model(model)),
        ("hf-cache", lambda: check_hf_cache(cache_dir)),
        ("hf-settings", check_hf_settings),
        ("temp-dir", check_temp_dir),
    ]
    if edge_model is not None:
        checks.append(("edge-model", lambda: check_edge_model(edge_model)))
    return [_guarded(name, fn) for name, fn in checks]


def exit_code(checks: list[Check]) -> int:
    """0 if every required check passed, else 1."""
    return 0 if all(c.ok or not c.required for c in checks) else 1
