"""Package discovery, the one thing pyproject.toml cannot say: every package under avscene/ found
by setuptools, plus ``avscene.bundled``, which is the top-level models/ folder under another name
(mapped, with its package data, in pyproject.toml) and so cannot be found by its name."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["avscene", "avscene.*"]), "avscene.bundled"])
