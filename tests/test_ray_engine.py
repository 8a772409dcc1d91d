"""`--engine ray` on a real local Ray cluster: a head and a second node joined to it on 127.0.0.1.
Features equal a local run's; killing a worker mid-run still completes the job with a clean
store. The cluster is stopped whatever happens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_subset
from originprobe.backbones import load_backbone
from originprobe.cli import main
from originprobe.data import load_dataset
from originprobe.data.samples import hash_samples
from originprobe.features import open_store

RAY = str(Path(sys.executable).parent / "ray")
LAYERS = ["stage5", "head"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` on 127.0.0.1 plus a second node joined to it; stopped at the end."""
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="opray-", dir="/tmp")  # short: Ray's socket paths
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    common = ["--disable-usage-stats", "--object-store-memory", str(150 * 2**20)]
    try:
        subprocess.run(
            [
                RAY,
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(port),
                "--num-cpus",
                "1",
                "--include-dashboard",
                "false",
                "--temp-dir",
                tmp,
                *common,
            ],
            check=True,
            env=env,
            capture_output=True,
            timeout=180,
        )
        subprocess.run(
            [
                RAY,
                "start",
                "--address",
                f"127.0.0.1:{port}",
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                "1",
                *common,
            ],
            check=True,
            env=env,
            capture_output=True,
            timeout=180,
        )
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def data(realgen, tmp_path_factory) -> Path:
    return write_subset(
        realgen,
        tmp_path_factory.mktemp("ray-data"),
        {"real": 24, "dalle-mini": 24, "midjourney-v3": 24},
    )


def _features(cache: Path, manifest: Path) -> dict[str, np.ndarray]:
    bb = load_backbone("efficientnet-lite0")
    store = open_store(cache, bb)
    samples, _ = hash_samples(load_dataset(str(manifest)).samples)
    return {l: store.load([s.sha256 for s in samples], l) for l in LAYERS}, store


def _extract(cache: Path, manifest: Path, *extra: str, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "originprobe.cli",
            "extract",
            str(manifest),
            "--cache",
            str(cache),
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            ",".join(LAYERS),
            "--quiet",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("attempt", [1, 2, 3])  # a lost worker must not fail the job, ever
def test_ray_extraction_equals_local_and_survives_a_killed_worker(cluster, data, tmp_path, attempt):
    address, env = cluster
    local = tmp_path / "local"
    assert (
        main(
            [
                "extract",
                str(data),
                "--cache",
                str(local),
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                ",".join(LAYERS),
                "--quiet",
            ]
        )
        == 0
    )
    want, _ = _features(local, data)

    # the cluster computes the features (its workers write them into the store) while one of
    # its model workers is killed mid-run: the job still completes, equal to the local run
    cache = tmp_path / "ray"
    proc = _extract(
        cache, data, "--engine", "ray", "--address", address, "--batch-size", "4", env=env
    )
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            workers = _model_workers()
            if workers and list(cache.glob("*/shard-*")):
                os.kill(workers[0], signal.SIGKILL)
                killed = workers[0]
            time.sleep(0.2)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no model worker was seen mid-run"
    assert proc.returncode == 0, out
    assert "72 images" in out and "0 skipped" in out, out
    got, store = _features(cache, data)
    for l in LAYERS:
        assert got[l].dtype == want[l].dtype
        np.testing.assert_allclose(got[l], want[l], rtol=0, atol=2e-3)  # float16 rows
    report = store.verify()
    assert report.ok, report
    assert main(["cache", "verify", str(cache)]) == 0

    # a second run finds everything in the store and computes nothing
    proc = _extract(cache, data, "--engine", "ray", "--address", address, env=env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "72 cached, 0 extracted" in out, out


def _model_workers() -> list[int]:
    """PIDs of the Ray actor processes that run the backbone."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"_Extract" in cmd and b"ray::" in cmd:
                pids.append(int(d.name))
    return pids


def test_engine_ray_without_ray_says_how_to_install(data, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    rc = main(["extract", str(data), "--cache", str(tmp_path / "c"), "--engine", "ray", "--quiet"])
    assert rc == 2 and "pip install 'originprobe[ray]'" in capsys.readouterr().err


def test_selection_runs_as_ray_tasks_and_chooses_as_a_local_run(cluster, data, tmp_path):
    """`fit --engine ray`: the candidates of the layer search are Ray tasks that read their
    layers from the feature store; the choice equals a local fit's."""
    address, env = cluster
    common = ["fit", "--data", str(data), "--known", "real,dalle-mini,midjourney-v3",
              "--cache", str(tmp_path / "cache"), "--backbone", "efficientnet-lite0",
              "--layers", ",".join(LAYERS), "--layer-search", "forward", "--combine-layers", "2",
              "--quiet"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    r = subprocess.run(
        [sys.executable, "-m", "originprobe.cli", *common, "--out", str(tmp_path / "ray"),
         "--engine", "ray", "--address", address],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    local, ray = (json.loads((tmp_path / d / "model.json").read_text())["selection"]
                  for d in ("local", "ray"))  # fmt: skip
    assert local["engine"] == "local" and ray["engine"] == "ray"
    assert ray["layer"] == local["layer"] and ray["params"] == local["params"]
    assert ray["score"] == local["score"] and ray["fits"] == local["fits"]
    assert ray["estimate"] == local["estimate"]


def test_a_learned_network_trained_here_extracts_on_the_cluster(cluster, data, tmp_path):
    """`fit --engine ray --backbone learned:...`: the network is trained here, its file is
    handed to the cluster's workers, and their features give the local fit's model."""
    address, env = cluster
    common = ["fit", "--data", str(data), "--known", "real,dalle-mini,midjourney-v3",
              "--backbone", "learned:forensic-cnn", "--layers", "embed", "--train-epochs", "1",
              "--train-patch", "32", "--train-loss", "ce", "--quiet"]  # fmt: skip
    assert main([*common, "--cache", str(tmp_path / "a"), "--out", str(tmp_path / "local")]) == 0
    r = subprocess.run(
        [sys.executable, "-m", "originprobe.cli", *common, "--cache", str(tmp_path / "b"),
         "--out", str(tmp_path / "ray"), "--engine", "ray", "--address", address],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert list((tmp_path / "b").glob("*/shard-*"))  # the workers wrote the features
    local, ray = (json.loads((tmp_path / d / "model.json").read_text())
                  for d in ("local", "ray"))  # fmt: skip
    assert ray["backbone"]["weights_id"] == local["backbone"]["weights_id"]
    assert ray["selection"]["params"] == local["selection"]["params"]
    assert ray["threshold"] == pytest.approx(local["threshold"], abs=1e-3)


def test_the_api_on_the_cluster_gives_the_command_lines_model(cluster, data, tmp_path):
    """`Attributor(runtime={"engine": "ray", ...}).fit(...)` extracts and selects on the cluster
    through the same path as `fit --engine ray`, and both give the local command line's model."""
    from test_one_fit_path import same_model

    address, env = cluster
    known = "real,dalle-mini,midjourney-v3"
    assert main(["fit", "--data", str(data), "--known", known, "--backbone",
                 "efficientnet-lite0", "--layers", ",".join(LAYERS), "--cache",
                 str(tmp_path / "a"), "--out", str(tmp_path / "local"), "--quiet"]) == 0  # fmt: skip
    code = (
        "import sys\nfrom originprobe import Attributor\n"
        "Attributor(backbone='efficientnet-lite0', layers=sys.argv[1].split(','),\n"
        "           runtime={'engine': 'ray', 'address': sys.argv[2], 'cache': sys.argv[3]}\n"
        "           ).fit(sys.argv[4], known=sys.argv[5].split(',')).save(sys.argv[6])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, ",".join(LAYERS), address, str(tmp_path / "b"), str(data),
         known, str(tmp_path / "api")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert list((tmp_path / "b").glob("*/shard-*"))  # the cluster's workers wrote the features
    assert json.loads((tmp_path / "api" / "model.json").read_text())["selection"]["engine"] == "ray"
    same_model(tmp_path / "local", tmp_path / "api")


def test_a_cluster_that_keeps_losing_work_is_finished_here_from_the_store(
    data, tmp_path, monkeypatch
):
    """When Ray loses the work again and again, the job is tried again on what the store still
    lacks (rows written before are kept), then finished in this process, with a warning; the
    features equal a local run's."""
    from originprobe.data import load_dataset
    from originprobe.features import extract_features, ray_engine
    from originprobe.runtime import Runtime

    calls = []

    def flaky(todo, job, rt, progress, actors=None):  # writes half of its rows, then "dies"
        calls.append(len(todo))
        half = todo[: len(todo) // 2]
        feats = extract_features(half, job.backbone, job.store, job.layers, Runtime(workers=0))
        assert feats.computed == len(half)
        raise RuntimeError("ActorDiedError: the worker died unexpectedly")

    monkeypatch.setattr(ray_engine, "connect", lambda address: None)
    monkeypatch.setattr(ray_engine, "extract_on_ray", flaky)
    bb = load_backbone("efficientnet-lite0")
    store = open_store(tmp_path / "cache", bb)
    samples, _ = hash_samples(load_dataset(str(data)).samples)
    with pytest.warns(UserWarning, match="lost work 3 times"):
        rep = extract_features(samples, bb, store, LAYERS, Runtime(engine="ray", workers=0))
    assert calls[0] == 72 and calls[1] < calls[0] and len(calls) == ray_engine.RAY_ATTEMPTS
    assert rep.retries == ray_engine.RAY_ATTEMPTS and "+local" in rep.runtime
    assert not store.missing([s.sha256 for s in samples], LAYERS) and store.verify().ok
    local = open_store(tmp_path / "local", bb)
    extract_features(samples, bb, local, LAYERS, Runtime(workers=0))
    for l in LAYERS:
        hashes = [s.sha256 for s in samples]
        np.testing.assert_array_equal(store.load(hashes, l), local.load(hashes, l))
