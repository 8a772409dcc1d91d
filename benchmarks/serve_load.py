"""`make bench` section `serve`: the HTTP service under a bounded load vs `predict` in one process.

A model is fitted on realgen's known classes and saved; then, on the same images:
- `predict`: `Attributor.load(...).predict(paths)` in this process (the batch command's work,
  model loading excluded) → images/s;
- `serve`: `originprobe serve` started on 127.0.0.1 (a free port), 500 requests of 3 images each,
  16 at a time → p50/p99 latency, images/s, the server's peak RSS; the ratio to `predict`.
The server is stopped whatever happens. The load generator shares the machine's cores with the
server, which the ratio includes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np

KNOWN = ["real", "dalle-mini", "latent-diffusion", "glid3-xl", "midjourney-v3"]


def _emit(row: dict) -> None:
    import json

    print(json.dumps({"section": "serve", **row}), flush=True)


def _model(data: Path, work: Path) -> Path:
    from originprobe import Attributor

    out = work / "serve-model"
    if not (out / "model.json").is_file():
        att = Attributor(
            backbone="efficientnet-lite0",
            layers="stage5",
            runtime={"cache": str(work / "serve-cache")},
        )
        att.fit(str(data / "manifest.csv"), known=KNOWN).save(out)
    return out


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _load(
    base: str, files: list[Path], requests: int, per_request: int, concurrency: int
) -> tuple[list[float], float, int]:
    import httpx

    payloads = [f.read_bytes() for f in files]
    latencies: list[float] = []
    failures = 0
    next_req = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_req, failures
        while next_req < requests:
            i = next_req
            next_req += 1
            up = [
                (
                    "files",
                    (f"{i}-{k}.png", payloads[(i * per_request + k) % len(payloads)], "image/png"),
                )
                for k in range(per_request)
            ]
            t = time.perf_counter()
            r = await client.post(base + "/v1/attribute", files=up)
            latencies.append(time.perf_counter() - t)
            failures += r.status_code != 200

    async with httpx.AsyncClient(timeout=120) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, wall, failures


def main(data: Path, work: Path, quick: bool = False) -> None:
    requests, per_request, concurrency = (100 if quick else 500), 3, 16
    model = _model(data, work)
    files = sorted(
        p for c in KNOWN + ["pixray-vqgan", "disco-diffusion"] for p in (data / c).iterdir()
    )[: requests * per_request]
    from originprobe import Attributor

    att = Attributor.load(model)
    att.predict(files[:8])  # warm-up, as the server's start-up does
    t = time.perf_counter()
    att.predict(files)
    predict_ips = len(files) / (time.perf_counter() - t)
    del att
    from originprobe.serve.process import running_server

    with running_server(
        model, work / "serve-bench.log", "--max-batch", "32", "--max-wait-ms", "10"
    ) as (base, proc):
        lat, wall, failures = asyncio.run(_load(base, files, requests, per_request, concurrency))
        rss = _peak_rss_mb(proc.pid)
    ips = requests * per_request / wall
    _emit(
        {
            "requests": requests,
            "images_per_request": per_request,
            "concurrency": concurrency,
            "failures": failures,
            "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1),
            "serve_img_s": round(ips, 1),
            "predict_img_s": round(predict_ips, 1),
            "serve_over_predict": round(ips / predict_ips, 3),
            "server_peak_rss_mb": round(rss),
            "goal": "serve_over_predict >= 0.8",
        }
    )


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "data" / "realgen",
        root / ".cache" / "bench",
        "--quick" in sys.argv,
    )
