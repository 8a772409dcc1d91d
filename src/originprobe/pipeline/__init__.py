"""The stages wired together: prepare (data → features), evaluate, fit, predict, bundles."""
from .bundle import Bundle, BundleError, load_bundle, save_bundle
from .evaluate import evaluate
from .fit import fit
from .predict import Prediction, load_model, predict_paths
from .prepare import RunConfig, prepare

__all__ = ["Bundle", "BundleError", "Prediction", "RunConfig", "evaluate", "fit", "load_bundle",
           "load_model", "predict_paths", "prepare", "save_bundle"]
