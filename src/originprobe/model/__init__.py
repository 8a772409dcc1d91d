"""The fitted model: `Attributor` (backbone → layer → head → open-set score → threshold) and its
bundle format. Everything after it (evaluation, reports, the command line, the service) holds one
and never re-implements its decisions."""

from .attributor import DEFAULTS, Attribution, Attributor, Decisions, check_params
from .bundle import BundleError

__all__ = ["DEFAULTS", "Attribution", "Attributor", "BundleError", "Decisions", "check_params"]
