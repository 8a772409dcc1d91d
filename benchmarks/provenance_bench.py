"""`make bench` section `provenance`: what reading each file's provenance metadata costs.

1,000 re-crops of realgen without metadata (PNG, as most generated images arrive) are attributed
by one saved model in one process, with and without evidence (`provenance=False` is
`predict --no-evidence`), alternating, best of 2 each; plus the reader alone over the same files.
Goal: evidence costs ≤ 3 % of `predict`'s time.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import KNOWN, emit, recrops


def main(data: Path, work: Path, quick: bool) -> None:
    from originprobe import Attributor
    from originprobe.data import load_dataset
    from originprobe.provenance import EvidenceReader

    n = 300 if quick else 1000
    files = [s.path for s in load_dataset(recrops(data, work / f"recrops-{n}", n)).samples]
    model_dir = work / "provenance-model"
    if not (model_dir / "model.json").is_file():
        fit_set = recrops(data, work / "recrops-500", 500)
        att = Attributor(runtime={"cache": str(work / "cache")})
        att.fit(fit_set, known=KNOWN).save(model_dir)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(2):
        for evidence in (False, True):
            att = Attributor.load(model_dir, provenance=evidence)
            t = time.perf_counter()
            out = att.predict(files)
            times[evidence].append(time.perf_counter() - t)
            assert all(r.ok for r in out) and (out[0].evidence is not None) == evidence
    reader = EvidenceReader()
    t = time.perf_counter()
    records = [reader.read(f) for f in files]
    reader_s = time.perf_counter() - t
    without, with_ = min(times[False]), min(times[True])
    emit(
        "provenance",
        {
            "images": n,
            "predict_s": round(without, 2),
            "predict_with_evidence_s": round(with_, 2),
            "extra_pct": round(100 * (with_ / without - 1), 2),
            "reader_alone_s": round(reader_s, 3),
            "reader_ms_per_image": round(1000 * reader_s / n, 3),
            "reader_pct_of_predict": round(100 * reader_s / without, 2),
            "records_with_claims": sum(not r.empty for r in records),
            "goal_pct": 3.0,
        },
    )
