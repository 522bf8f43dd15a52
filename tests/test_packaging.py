"""What an installed (non-editable) avscene holds: the packages and package data setuptools takes
from this checkout's setup.py and pyproject.toml, read as setuptools reads them for a build.

(CI, `.ci/run`, also builds a wheel, installs it into a fresh venv and runs the tool from there.)
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist():
    """The setuptools Distribution of the checkout, configured (setup.py run, pyproject.toml read)
    and not built."""
    import os
    import warnings

    import setuptools  # noqa: F401 - installs setuptools' distutils, which reads pyproject.toml
    from distutils.core import run_setup

    cwd = os.getcwd()
    os.chdir(ROOT)  # setup.py's discovery is relative to the project root, as in a build
    try:
        with warnings.catch_warnings():  # setuptools < 68 calls [tool.setuptools] "beta"
            warnings.filterwarnings("ignore", message=".*tool.setuptools.*beta")
            return run_setup(str(ROOT / "setup.py"), stop_after="config")
    finally:
        os.chdir(cwd)


def test_every_package_under_avscene_is_installed(dist) -> None:
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "avscene").rglob("__init__.py")}
    assert "avscene.separation" in on_disk  # the package the hand-written list left out
    missing = sorted(on_disk - set(dist.packages))
    assert not missing, f"not installed by a wheel: {missing}"


def test_the_bundled_model_is_installed_as_avscene_bundled(dist) -> None:
    """models/ is installed as avscene/bundled/ with every file of the bundled model
    (avscene.tasks.models.default_model_path looks for it there)."""
    assert "avscene.bundled" in dist.packages
    assert dist.package_dir["avscene.bundled"] == "models"
    patterns = dist.package_data["avscene.bundled"]
    folder = ROOT / "models" / "avscene-av-small"
    files = [p.relative_to(ROOT / "models").as_posix() for p in folder.iterdir() if p.is_file()]
    assert {"avscene-av-small/config.json", "avscene-av-small/model.safetensors"} <= set(files)
    left_out = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not left_out, f"bundled model files not installed: {left_out}"
