"""The feature store survives kill -9, concurrent writers and damaged files."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from originprobe.cli import main
from originprobe.data.samples import hash_samples, load_folder
from originprobe.features import FeatureStore

TINY = textwrap.dedent('''
    """A deterministic, deliberately slow backbone for store tests."""
    import time
    import torch
    from originprobe.backbones.base import Backbone, Preprocessing

    class TinyBackbone(Backbone):
        def __init__(self, delay=0.0):
            super().__init__()
            self.name = "tiny"
            self.preprocessing = Preprocessing(input_size=16, resize_size=16)
            self.layer_names = ["mean", "grid"]
            self.feature_dims = {"mean": 3, "grid": 48}
            self.weights_id = "tiny-v1"
            self.delay = delay
            self.prefers_channels_last = False

        def forward(self, x):
            time.sleep(self.delay)
            return {"mean": x.mean(dim=(2, 3)),
                    "grid": torch.nn.functional.avg_pool2d(x, 4).flatten(1)}

    def run(images, cache, delay, flush_every=16, flush_seconds=30.0):
        from originprobe.data.samples import load_folder
        from originprobe.features import FeatureStore, extract_features
        from originprobe.runtime import Runtime
        store = FeatureStore(cache, "tiny")
        rt = Runtime(batch_size=8, workers=0, flush_every=flush_every,
                     flush_seconds=flush_seconds, device="cpu")
        return extract_features(load_folder(images).samples, TinyBackbone(delay), store, None, rt)
''')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    (d / "tiny_backbone.py").write_text(TINY)
    sys.path.insert(0, str(d))
    import tiny_backbone

    images = d / "images" / "gen"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(160):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), np.uint8)).save(images / f"{i:03d}.png")
    yield {"dir": d, "images": d / "images", "module": tiny_backbone}
    sys.path.remove(str(d))


def _spawn(tiny, cache: Path, delay: float, **kw) -> subprocess.Popen:
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    code = (
        f"import sys; sys.path.insert(0, {str(tiny['dir'])!r}); import tiny_backbone; "
        f"r = tiny_backbone.run({str(tiny['images'])!r}, {str(cache)!r}, {delay}{extra}); "
        f"print(r.computed, r.shared)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _committed_rows(cache: Path) -> int:
    store = FeatureStore(cache, "tiny")
    return sum(len(s.hashes) for s in store.shards)


def _all_hashes(tiny) -> list[str]:
    samples, problems = hash_samples(load_folder(tiny["images"]).samples)
    assert not problems
    return [s.sha256 for s in samples]


def test_kill_9_then_rerun_recomputes_only_what_was_not_committed(tiny, tmp_path):
    cache = tmp_path / "cache"
    proc = _spawn(tiny, cache, delay=0.15)
    deadline = time.time() + 60
    while time.time() < deadline and (
        not (cache / "tiny").is_dir() or len(list((cache / "tiny").glob("shard-*"))) < 2
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = _committed_rows(cache)
    assert 32 <= committed < 160, committed  # killed mid-run, after two shards
    report = tiny["module"].run(tiny["images"], cache, delay=0.0)
    assert report.cached == committed
    assert report.computed == 160 - committed  # the in-flight shard and the rest, nothing more
    store = FeatureStore(cache, "tiny")
    assert store.verify().ok
    assert not list((cache / "tiny").glob(".tmp-*"))  # the dead writer's leftovers are gone
    assert store.missing(_all_hashes(tiny), ["mean", "grid"]) == []


def test_two_concurrent_writers_share_the_work_and_keep_the_store_clean(tiny, tmp_path):
    cache = tmp_path / "cache"
    procs = [_spawn(tiny, cache, delay=0.25) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    computed = [int(o[0].split()[0]) for o in outs]
    # each image was extracted once: the two runs split the work instead of doubling it
    assert sum(computed) == 160 and min(computed) > 0, computed
    store = FeatureStore(cache, "tiny")
    rep = store.verify()
    assert rep.ok and rep.rows == 160
    assert not list((cache / "tiny" / "claims").glob("*.claim"))  # every claim released
    hashes = _all_hashes(tiny)
    ref_cache = tmp_path / "ref"
    tiny["module"].run(tiny["images"], ref_cache, delay=0.0)
    ref = FeatureStore(ref_cache, "tiny")
    for layer in ("mean", "grid"):
        assert np.array_equal(store.load(hashes, layer), ref.load(hashes, layer))


def test_verify_reports_damage_and_repair_makes_it_recompute(tiny, tmp_path, capsys):
    cache = tmp_path / "cache"
    tiny["module"].run(tiny["images"], cache, delay=0.0)
    store = FeatureStore(cache, "tiny")
    shards = sorted((cache / "tiny").glob("shard-*"))
    assert len(shards) == 10  # 160 images in shards of 16: extraction streams, never all in RAM
    npy = shards[3] / "grid.npy"
    blob = bytearray(npy.read_bytes())
    blob[-5] ^= 0xFF
    npy.write_bytes(bytes(blob))
    (shards[5] / "mean.npy").unlink()
    rep = store.verify()
    assert not rep.ok
    assert {Path(p).name for p, _ in rep.damaged} == {shards[3].name, shards[5].name}
    reasons = " ".join(r for _, r in rep.damaged)
    assert "checksum mismatch in grid.npy" in reasons and "missing mean.npy" in reasons
    assert main(["cache", "verify", str(cache)]) == 1
    assert "DAMAGED (2 shard(s))" in capsys.readouterr().out
    assert main(["cache", "verify", str(cache), "--repair"]) == 1
    assert main(["cache", "verify", str(cache)]) == 0
    assert (cache / "tiny" / f"damaged-{shards[3].name}").is_dir()
    report = tiny["module"].run(tiny["images"], cache, delay=0.0)
    assert report.computed == 32 and report.cached == 128
    assert FeatureStore(cache, "tiny").verify().ok


def test_a_shard_becomes_visible_only_when_complete(tiny, tmp_path):
    store = FeatureStore(tmp_path / "c", "tiny")
    tmp = store.dir / ".tmp-999999-abc"  # a writer that died mid-shard
    tmp.mkdir()
    (tmp / "mean.npy").write_bytes(b"partial")
    assert store.missing(["h1"], ["mean"]) == ["h1"]
    assert store.verify().shards == 0
    assert store.clean_stale() == 1 and not tmp.exists()
    store.write_shard(["h1"], {"mean": np.ones((1, 3), np.float32)})
    assert store.missing(["h1"], ["mean"]) == []
    assert store.load(["h1"], "mean").dtype == np.float32


def test_a_kill_loses_at_most_the_last_flush_interval(tiny, tmp_path):
    """Fewer images than a shard's count: the time limit still commits them as it goes."""
    cache = tmp_path / "cache"
    proc = _spawn(tiny, cache, delay=0.3, flush_every=1000, flush_seconds=0.5)
    deadline = time.time() + 60
    while time.time() < deadline and (
        not (cache / "tiny").is_dir() or not list((cache / "tiny").glob("shard-*"))
    ):
        time.sleep(0.05)
    time.sleep(0.8)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = _committed_rows(cache)
    assert 8 <= committed < 160, committed
    report = tiny["module"].run(tiny["images"], cache, delay=0.0)
    assert report.cached == committed and report.computed == 160 - committed


def _corrupt_rows(npy: Path) -> None:
    """Swap the first two rows of a stored array, keeping the file's length."""
    arr = np.load(npy)
    arr[[0, 1]] = arr[[1, 0]]
    with open(npy, "wb") as f:
        np.save(f, arr)


def test_reads_are_verified_a_swapped_row_is_an_error_naming_the_shard(tiny, tmp_path):
    from originprobe.features import StoreError

    cache = tmp_path / "cache"
    tiny["module"].run(tiny["images"], cache, delay=0.0)
    hashes = _all_hashes(tiny)
    shards = sorted((cache / "tiny").glob("shard-*"))
    _corrupt_rows(shards[2] / "grid.npy")
    store = FeatureStore(cache, "tiny")
    with pytest.raises(StoreError, match=shards[2].name):
        store.load(hashes, "grid")
    assert store.load(hashes, "mean").shape == (160, 3)  # the other layer is intact
    # a truncated file names its shard too
    npy = shards[4] / "mean.npy"
    npy.write_bytes(npy.read_bytes()[:100])
    with pytest.raises(StoreError, match=shards[4].name):
        FeatureStore(cache, "tiny").load(hashes, "mean")


def test_an_edited_shard_description_is_never_read(tiny, tmp_path):
    """meta.json carries its own checksum: swapping two image hashes in it (which would give
    each image the other's features) makes the shard invisible, so its rows are recomputed."""
    import json

    cache = tmp_path / "cache"
    tiny["module"].run(tiny["images"], cache, delay=0.0)
    shard = sorted((cache / "tiny").glob("shard-*"))[0]
    meta = json.loads((shard / "meta.json").read_text())
    meta["hashes"][0], meta["hashes"][1] = meta["hashes"][1], meta["hashes"][0]
    (shard / "meta.json").write_text(json.dumps(meta))
    store = FeatureStore(cache, "tiny")
    assert len(store.missing(_all_hashes(tiny), ["mean"])) == 16
    rep = store.verify()
    assert [Path(p).name for p, _ in rep.damaged] == [shard.name]
    assert "checksum" in rep.damaged[0][1]
    again = tiny["module"].run(tiny["images"], cache, delay=0.0)
    assert again.computed == 16
