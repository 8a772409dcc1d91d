"""Runs on top of the model: prepare (data → features), evaluate, compare, fit, studies, dry runs."""

from .dryrun import DryRun, dry_run
from .fit import fit
from .prepare import RunConfig, prepare
from .runs import evaluate

__all__ = ["DryRun", "RunConfig", "dry_run", "evaluate", "fit", "prepare"]
