"""The one family of errors a user can cause: every one derives from `OriginprobeError`.

The command line catches `OriginprobeError` (and `OSError`, which the operating system raises
with the path it could not use) and prints one line naming the file and the reason. Subclasses
that also derive from a built-in (`ValueError`, `FileNotFoundError`, ...) keep working for
callers that catch the built-in. This module imports nothing from the package.
"""

from __future__ import annotations


class OriginprobeError(Exception):
    """Base of every error a user of originprobe can cause (bad input, options, files)."""


class ConfigError(OriginprobeError, ValueError):
    """An option, configuration or argument that cannot be used."""


class MissingInputError(OriginprobeError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class OutputExistsError(OriginprobeError, FileExistsError):
    """An output would replace something the user already has."""


__all__ = ["ConfigError", "MissingInputError", "OriginprobeError", "OutputExistsError"]
