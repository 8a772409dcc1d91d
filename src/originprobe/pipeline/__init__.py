"""Runs on top of the model: prepare (data → features), evaluate, compare, fit, studies, dry runs."""
from .dryrun import DryRun, dry_run
from .runs import evaluate
from .fit import fit
from .prepare import RunConfig, prepare

__all__ = ["DryRun", "RunConfig", "dry_run", "evaluate", "fit", "prepare"]
