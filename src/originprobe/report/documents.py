"""The documents originprobe answers with, each defined once.

`predict_document` is the one predict answer: `originprobe predict --json` prints it and `serve`
returns it. Its `results` list holds every record in input order, attributed or not (a record
that could not be used has `label` null and its `error`); `attributed` and `skipped` count them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def predict_document(
    model: Any, records: Sequence, model_name: str | None, note: str | None = None
) -> dict:
    """The predict answer for `records` (`Attribution`s) from `model`; `model_name` (the model's
    path) is left out when None (the service does not show its paths)."""
    doc = {"model": model_name} if model_name is not None else {}
    return doc | {
        "model_id": (getattr(model, "bundle_meta_", None) or {}).get("checksum"),
        "score": model.score_name_,
        "threshold": model.threshold_,
        "evidence_note": note,
        "attributed": sum(1 for r in records if r.ok),
        "skipped": sum(1 for r in records if not r.ok),
        "results": [r.to_dict() for r in records],
    }
