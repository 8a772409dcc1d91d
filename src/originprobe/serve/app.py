"""`originprobe serve`: one fitted `Attributor` behind HTTP, and a web page for analysts.

Endpoints
- `POST /v1/attribute`: multipart upload of one or more images (field `files`) → per file the
  fields of `Attribution` (label or "unknown", closest, score, threshold, top-k probabilities),
  plus the model id. The same image gets the same answer as `originprobe predict --json`.
- `GET /v1/model`, `GET /healthz`, `GET /readyz` (ready once the model is loaded and has run
  once), `GET /metrics` (Prometheus text: request counts, latency and batch-size histograms).
- `GET /`: the page (drop zone, thumbnails, verdicts, probability bars, score against the
  threshold); every asset comes from this package, nothing from a CDN.

Bad input never gives a 500: a body over `--max-upload-mb` is 413, a file that is not an image
(or is corrupt) 415, a decompression bomb or an image over the pixel limit 422; the JSON error
names the file and the reason, and the server keeps serving. Every file of a request is checked
before any is attributed, so a rejected request costs no inference. URLs are never fetched.
Off the loopback interface a bearer token is required (`ORIGINPROBE_API_TOKEN`).
"""

import hmac
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from .._version import __version__
from ..data.images import (
    ImageDecodeError,
    describe_non_image,
    image_size,
    max_pixels,
    sniff_format,
)
from ..discovery import MIN_CLUSTER_SIZE, check_cluster_settings
from ..errors import ConfigError
from ..features import ImageInput
from ..model import Attributor
from ..options import option
from ..report.documents import predict_document
from .batcher import Batcher

TOKEN_ENV = "ORIGINPROBE_API_TOKEN"
STATIC = ("index.html", "app.js", "style.css")
_MEDIA = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


class UploadTooLarge(Exception):
    pass


def _status_for(reason: str) -> int:
    r = reason.lower()
    return 422 if ("decompression bomb" in r or "exceeds the limit" in r) else 415


def check_upload(name: str, data: bytes) -> tuple[int, str] | None:
    """(status, reason) when a file cannot be attributed, from its header alone; else None."""
    if not data:
        return 415, "empty file (0 bytes)"
    fmt = sniff_format(data[:32])
    if fmt is None:
        return 415, describe_non_image(data[:32])
    try:  # the header as decoding reads it: metadata the decoder refuses does not count
        image_size(data, name)
    except ImageDecodeError as exc:
        if exc.pixels:
            return 422, f"{exc.reason} (limit {max_pixels()} pixels, --max-pixels)"
        return 415, exc.reason
    return None


class _BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 without reading it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_json(send, 413, _too_large(self.limit))
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise UploadTooLarge()
            return msg

        try:
            await self.app(scope, limited, send)
        except UploadTooLarge:
            await _send_json(send, 413, _too_large(self.limit))


def _too_large(limit: int) -> dict:
    return {
        "error": "upload too large",
        "reason": f"the request body exceeds {limit / 2**20:g} MB (--max-upload-mb)",
    }


async def _send_json(send, status: int, obj: dict) -> None:
    import json

    body = json.dumps(obj).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class ServeSettings:
    """How `originprobe serve` listens and batches (each field is also its option)."""

    host: str = option(
        "127.0.0.1", "interface to bind; any but loopback needs ORIGINPROBE_API_TOKEN"
    )
    port: int = option(8000, "TCP port (0: any free one)")
    max_upload_mb: float = option(20.0, "larger uploads get 413")
    max_batch: int = option(32, "images of concurrent requests gathered into one forward pass")
    max_wait_ms: float = option(10.0, "how long a request waits for others to share its batch")


def create_app(
    model: Attributor | str | Path,
    max_upload_mb: float = ServeSettings.max_upload_mb,
    max_batch: int = ServeSettings.max_batch,
    max_wait_ms: float = ServeSettings.max_wait_ms,
    token: str | None = None,
):
    """The FastAPI application holding one model (loaded at start-up when given a path)."""
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )

    registry = CollectorRegistry()
    requests_total = Counter(
        "originprobe_requests_total",
        "HTTP requests",
        ["endpoint", "method", "status"],
        registry=registry,
    )
    latency = Histogram(
        "originprobe_request_seconds",
        "Request latency",
        ["endpoint"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )
    images_total = Counter(
        "originprobe_images_total", "Images received", ["outcome"], registry=registry
    )
    batch_images = Histogram(
        "originprobe_batch_images",
        "Images per forward batch",
        registry=registry,
        buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    )
    state: dict = {"ready": False}

    @asynccontextmanager
    async def lifespan(app):
        att = model if isinstance(model, Attributor) else Attributor.load(model)
        state["model"] = att
        state["model_id"] = (getattr(att, "bundle_meta_", None) or {}).get("checksum", "")
        state["batcher"] = Batcher(att, max_batch, max_wait_ms, batch_images.observe)
        await state["batcher"].start()
        import numpy as np

        warm = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, att.predict, [warm])
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            await state["batcher"].stop()

    app = FastAPI(
        title="originprobe", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )

    @app.middleware("http")
    async def measure(request: Request, call_next):
        t = time.perf_counter()
        path = request.url.path
        endpoint = (
            path
            if path in ("/", "/v1/attribute", "/v1/model", "/healthz", "/readyz", "/metrics")
            or path.startswith("/static/")
            else "other"
        )
        if token and (path.startswith("/v1/") or path == "/metrics"):
            got = request.headers.get("authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
                response = JSONResponse(
                    {
                        "error": "unauthorized",
                        "reason": "send the API "
                        f"token as 'Authorization: Bearer ...' ({TOKEN_ENV})",
                    },
                    status_code=401,
                )
                requests_total.labels(endpoint, request.method, "401").inc()
                return response
        try:
            response = await call_next(request)
        except UploadTooLarge:
            raise  # answered 413 by the body-limit layer
        except Exception as exc:  # noqa: BLE001 - never a bare 500 without a reason
            response = JSONResponse(
                {"error": "internal error", "reason": f"{type(exc).__name__}: {exc}"},
                status_code=500,
            )
        latency.labels(endpoint).observe(time.perf_counter() - t)
        requests_total.labels(endpoint, request.method, str(response.status_code)).inc()
        return response

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not state["ready"]:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model")
    async def describe():
        att = state["model"]
        return {
            "model_id": state["model_id"],
            **att.describe(),
            "versions": _versions(),
            "limits": {
                "max_upload_mb": max_upload_mb,
                "max_pixels": max_pixels(),
                "max_batch": max_batch,
                "max_wait_ms": max_wait_ms,
            },
        }

    async def read_uploads(files) -> tuple[list[tuple[str, bytes]], Response | None]:
        """(name, bytes) of every upload, and the answer refusing the first unusable one (None
        when all are usable): every file is checked before any is attributed."""
        uploads = [(f.filename or f"upload #{i}", await f.read()) for i, f in enumerate(files)]
        for name, data in uploads:
            bad = check_upload(name, data)
            if bad is not None:
                images_total.labels("rejected").inc(len(uploads))
                body = {"error": "unusable image", "file": name, "reason": bad[1],
                        "model_id": state["model_id"]}  # fmt: skip
                return uploads, JSONResponse(body, status_code=bad[0])
        return uploads, None

    @app.post("/v1/attribute")
    async def attribute(files: list[UploadFile] = File(...)):
        uploads, refused = await read_uploads(files)
        if refused is not None:
            return refused
        results = await state["batcher"].attribute(uploads)
        failed = [r for r in results if r.error]
        images_total.labels("attributed").inc(len(results) - len(failed))
        att = state["model"]
        reader = att.evidence_reader()
        body = predict_document(att, results, None, reader.note if reader else None) | {
            "model_id": state["model_id"],
        }
        if failed:
            images_total.labels("rejected").inc(len(failed))
            body |= {"error": "unusable image", "file": failed[0].source, "reason": failed[0].error}
            return JSONResponse(body, status_code=_status_for(failed[0].error))
        return body

    @app.post("/v1/discover")
    async def discover(files: list[UploadFile] = File(...),
                       min_cluster_size: int = MIN_CLUSTER_SIZE, seed: int = 0):  # fmt: skip
        """Attribute the uploads, then group the ones rejected as unknown (`discover`)."""
        from ..model.discovery import discover_images

        try:
            check_cluster_settings(min_cluster_size, seed)
        except ConfigError as exc:
            return JSONResponse({"error": "bad request", "reason": str(exc)}, status_code=422)
        uploads, refused = await read_uploads(files)
        if refused is not None:
            return refused
        inputs = [ImageInput(name, data) for name, data in uploads]
        found = await state["batcher"].call(
            lambda: discover_images(state["model"], inputs, min_cluster_size, seed)
        )
        images_total.labels("attributed").inc(sum(a.ok for a in found.attributions))
        return found.to_dict() | {"model_id": state["model_id"]}

    @app.get("/")
    async def page():
        return _static("index.html")

    @app.get("/static/{name}")
    async def static(name: str):
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404)
        return _static(name)

    def _static(name: str):
        data = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(data, media_type=_MEDIA[name])

    return _BodyLimit(app, int(max_upload_mb * 2**20)), app


def _versions() -> dict:
    from ..report.results import software_versions

    try:
        return dict(software_versions(None, "")["versions"])
    except Exception:  # noqa: BLE001 - versions are informative only
        import platform

        return {"originprobe": __version__, "python": platform.python_version()}


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServeError(ConfigError):
    """A service option that cannot work; the message says why."""


def check_serve_options(
    host: str,
    port: int,
    max_upload_mb: float,
    max_batch: int,
    max_wait_ms: float,
    token: str | None,
) -> None:
    """Refuse, before loading anything, what would start a service that is unsafe or broken."""
    if not is_loopback(host) and not token:
        raise ServeError(
            f"--host {host} is reachable from other machines: refusing to start "
            f"without a token; set {TOKEN_ENV} (clients then send "
            "'Authorization: Bearer <token>'), or bind to 127.0.0.1"
        )
    if not 0 <= port <= 65535:
        raise ServeError(f"--port {port}: not a TCP port (0..65535)")
    if not max_upload_mb > 0:
        raise ServeError(f"--max-upload-mb {max_upload_mb}: must be > 0")
    if max_batch < 1 or not max_wait_ms >= 0:
        raise ServeError("--max-batch must be ≥ 1 and --max-wait-ms ≥ 0")
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ServeError(
            f"the service needs its extra ({exc.name} is missing): pip install 'originprobe[serve]'"
        ) from None


def serve(model_dir: str | Path, token: str | None = None, **settings_and_runtime) -> None:
    """Run the service until interrupted. `settings_and_runtime`: `ServeSettings` fields (unset
    or None: their defaults) and `Attributor.load`'s runtime settings."""
    import uvicorn

    from ..runtime import resolve_device

    names = {f.name for f in fields(ServeSettings)}
    given = {k: v for k, v in settings_and_runtime.items() if k in names and v is not None}
    runtime = {k: v for k, v in settings_and_runtime.items() if k not in names}
    st = ServeSettings(**given)
    check_serve_options(st.host, st.port, st.max_upload_mb, st.max_batch, st.max_wait_ms, token)
    resolve_device(runtime.get("device"))
    att = Attributor.load(model_dir, **runtime)
    asgi, _ = create_app(att, st.max_upload_mb, st.max_batch, st.max_wait_ms, token)
    uvicorn.run(asgi, host=st.host, port=st.port, log_level="info", access_log=False)
