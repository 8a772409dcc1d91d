"""Stage 3: backbone features, extracted once and cached on disk."""
from .extract import ExtractionReport, extract_features, load_features, open_store
from .store import FeatureStore, StoreError, VerifyReport, atomic_write_text, open_namespaces

__all__ = [
    "ExtractionReport", "FeatureStore", "StoreError", "VerifyReport", "atomic_write_text",
    "extract_features", "load_features", "open_namespaces", "open_store",
]
