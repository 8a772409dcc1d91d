"""Weights from the hub, for real but without the internet: a stand-in hub on 127.0.0.1 serves a
tiny randomly initialised model; the backbone is fetched into HF_HOME, then loads offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from hub_server import FakeHub

LOAD = textwrap.dedent("""
    import json, sys
    from originprobe.backbones import load_backbone
    bb = load_backbone(sys.argv[1])
    print(json.dumps({"weights_id": bb.weights_id, "layers": bb.layer_names,
                      "input": bb.preprocessing.input_size}))
""")


def _run(name: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LOAD, name], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    root = tmp_path_factory.mktemp("hub-repos")
    torch.manual_seed(0)
    vit = root / "vit"
    ViTModel(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            patch_size=16,
            image_size=224,
        ),
        add_pooling_layer=False,
    ).save_pretrained(vit)
    ViTImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        do_center_crop=True,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        resample=3,
    ).save_pretrained(vit)
    import timm
    from safetensors.torch import save_file

    timm_dir = root / "timm"
    timm_dir.mkdir()
    net = timm.create_model("resnet18", pretrained=False)
    save_file(net.state_dict(), str(timm_dir / "model.safetensors"))
    return {"tiny-org/vit-tiny": vit, "timm/resnet18.a1_in1k": timm_dir}


def test_a_missing_backbone_is_downloaded_cached_and_then_loads_offline(repos, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
    }
    with FakeHub(repos) as hub:
        env["HF_ENDPOINT"] = hub.url
        first = _run("hf:tiny-org/vit-tiny", env)
        assert first.returncode == 0, first.stderr[-3000:]
        got = json.loads(first.stdout.strip().splitlines()[-1])
        assert got["layers"] == ["block0", "block1"] and got["input"] == 224
        assert any("/resolve/" in r and "model.safetensors" in r for r in hub.requests)
        # any timm model by name, weights from its hub repository
        t = _run("timm:resnet18.a1_in1k", env)
        assert t.returncode == 0, t.stderr[-3000:]
        assert json.loads(t.stdout.strip().splitlines()[-1])["layers"][:2] == ["stage0", "stage1"]
        n_requests = len(hub.requests)
        assert (tmp_path / "hf" / "hub" / "models--tiny-org--vit-tiny").is_dir()
    # the server is gone: offline, from the cache alone
    offline = env | {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    again = _run("hf:tiny-org/vit-tiny", offline)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["weights_id"] == got["weights_id"]
    assert len(hub.requests) == n_requests
    # offline and not cached: a clear error naming the repository and what to do
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "originprobe",
            "extract",
            str(tmp_path),
            "--backbone",
            "hf:tiny-org/not-here",
            "--cache",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        env=offline,
        timeout=300,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "tiny-org/not-here" in r.stderr and "HF_HUB_OFFLINE" in r.stderr


def test_unreachable_hub_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }
    r = _run("hf:tiny-org/vit-tiny", env)
    assert r.returncode != 0
    assert "WeightsNotFoundError" in r.stderr and "tiny-org/vit-tiny" in r.stderr
