"""The answer for one image (`Attribution`), and provenance reading wrapped around prediction.

The verdict comes from the pixels alone (`Attributor.predict_pixels`). `with_evidence` wraps
that prediction: while the backbone runs, a thread reads what each file's metadata claims
(`provenance.EvidenceReader`), and the record is attached afterwards, compared with the verdict
but never changing it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..data.images import DROPPED
from ..features import ImageInput
from ..provenance import Evidence, EvidenceReader, compare


@dataclass
class Attribution:
    """The answer for one input image."""

    source: str  # the path, or "<bytes #i>", "<image #i>" ...
    label: str | None  # a known class or "unknown"; None on error
    closest: str | None = None  # the most likely known class, even if rejected
    score: float | None = None  # open-set score, higher = more likely known
    threshold: float | None = None  # below it the label is "unknown"
    probabilities: list[tuple[str, float]] = field(default_factory=list)  # top-k, descending
    error: str | None = None  # why the input could not be used
    warning: str | None = None  # used, but something is wrong with it
    evidence: Evidence | None = None  # what the file's metadata claims (never mixed
    # into the verdict); None for in-memory images

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "label": self.label,
            "closest": self.closest,
            "score": self.score,
            "threshold": self.threshold,
            "probabilities": [{"label": l, "probability": p} for l, p in self.probabilities],
            "error": self.error,
            "warning": self.warning,
            "evidence": self.evidence.to_dict() if self.evidence is not None else None,
        }


def with_evidence(
    predict: Callable[[list[ImageInput]], list[Attribution]],
    inputs: list[ImageInput],
    reader: EvidenceReader | None,
    classes: Sequence[str],
) -> list[Attribution]:
    """`predict(inputs)` with each file's (and byte string's) provenance evidence attached,
    read in a thread while `predict` runs; `reader` None: no evidence."""
    if reader is None:
        return predict(inputs)
    files = [
        (i, inp.source) for i, inp in enumerate(inputs) if isinstance(inp.source, (Path, bytes))
    ]
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="provenance")
    pending = pool.submit(lambda: {i: reader.read(src) for i, src in files})
    pool.shutdown(wait=False)
    out = predict(inputs)
    for i, ev in pending.result().items():
        out[i].evidence = compare(ev, out[i].label, list(classes)) if out[i].ok else ev
        warning = out[i].warning
        if warning is not None and DROPPED in warning:  # metadata the pixels were read without
            ev.warnings.append(warning)
    return out
