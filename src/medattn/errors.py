"""Errors a user can cause. Each message names the file or field and the fix."""

from __future__ import annotations

__all__ = [
    "MedattnError",
    "ConfigError",
    "DataError",
    "ModelError",
    "BundleError",
    "OutputError",
    "MissingExtraError",
]


class MedattnError(Exception):
    """Base class of every error a user can cause; the CLI prints it in one line (exit 2)."""


class ConfigError(MedattnError):
    """A recipe, option or argument is invalid."""


class DataError(MedattnError):
    """A data file or folder is missing, unreadable or malformed."""


class ModelError(MedattnError):
    """An unknown model/attention name, bad model argument or incompatible checkpoint."""


class BundleError(MedattnError):
    """A model bundle is missing, malformed, tampered with or incompatible."""


class OutputError(MedattnError):
    """An output location cannot be written."""


class MissingExtraError(ConfigError):
    """A verb needs an optional extra that is not installed (the message names the pip command)."""
