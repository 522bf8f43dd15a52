"""Typed errors raised by the avscene library.

Every error's message states what went wrong *and* how to fix it; the CLI maps
each class to a one-line message (see ``avscene/cli/_errors.py``).
"""

from __future__ import annotations


class AvsceneError(Exception):
    """Base class of every error avscene raises on purpose."""


class UsageError(AvsceneError):
    """The caller asked for something that cannot work (bad option, unknown label)."""


class DecodeError(AvsceneError):
    """An input file could not be read or decoded."""


class CheckpointError(AvsceneError):
    """A checkpoint is missing, corrupted, or does not match its config."""


class ConfigError(AvsceneError):
    """A configuration (model, preprocessing, training) is invalid."""


class OutputError(AvsceneError):
    """An output could not be written (exists without --force, unwritable folder)."""


class InputTimeoutError(AvsceneError):
    """Processing one input took longer than the per-input time limit (``--timeout``)."""
