"""Stage 3: backbone features, extracted once and cached on disk."""

from ..data.inputs import ImageInput
from . import engines  # noqa: F401 - registers the engines
from .extract import ExtractionReport, extract_arrays, extract_features, open_store
from .layers import LayerRows, LayerSpec, base_layers, parse_layer_list
from .store import FeatureStore, StoreError, StoreInfo, VerifyReport, open_namespaces

__all__ = [
    "ExtractionReport",
    "FeatureStore",
    "ImageInput",
    "LayerRows",
    "LayerSpec",
    "StoreError",
    "StoreInfo",
    "VerifyReport",
    "base_layers",
    "extract_arrays",
    "extract_features",
    "open_namespaces",
    "open_store",
    "parse_layer_list",
]
