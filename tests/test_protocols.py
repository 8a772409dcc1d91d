"""Benchmark protocols: shipped specs, raw GenImage tree → annotation files, official files read
unchanged, dry runs, and a full evaluate on a protocol built from realgen images."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import read_manifest
from originprobe.cli import main
from originprobe.protocols import ProtocolError, get_protocol, list_protocols, resolve_protocol

# GenImage generator folder <- realgen generator whose images stand in for it (first, count)
STAND_INS = {
    "wukong": ("dalle-mini", 0),
    "Midjourney": ("midjourney-v3", 0),
    "VQDM": ("glid3-xl", 0),
    "stable_diffusion_v_1_4": ("latent-diffusion", 0),
    "stable_diffusion_v_1_5": ("stable-diffusion-v1", 0),
    "BigGAN": ("pixray-vqgan", 0),
    "ADM": ("disco-diffusion", 0),
    "glide": ("latent-diffusion", 100),
}
TRAIN_AI, VAL_AI, TRAIN_NATURE, VAL_NATURE = 20, 8, 6, 3


def _link(src: Path, dst: Path) -> None:
    """A copy (a dataset's files must lie inside its root; a link out of it is not followed)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _build_genimage_tree(realgen: Path, root: Path, place=_link) -> Path:
    """<gen>/imagenet_ai_<gen>/{train,val}/{ai,nature} with realgen images placed by `place`."""
    by_label: dict[str, list[Path]] = {}
    for r in sorted(read_manifest(realgen), key=lambda r: r["path"]):
        by_label.setdefault(r["label"], []).append(realgen / r["path"])
    real = iter(by_label["real"])
    for gen, (src, first) in STAND_INS.items():
        imgs = by_label[src][first : first + TRAIN_AI + VAL_AI]
        assert len(imgs) == TRAIN_AI + VAL_AI
        base = root / gen / f"imagenet_ai_{gen.lower()}"
        for i, p in enumerate(imgs):
            part = "train" if i < TRAIN_AI else "val"
            place(p, base / part / "ai" / f"{i:03d}_{gen}.png")
        for part, n in (("train", TRAIN_NATURE), ("val", VAL_NATURE)):
            for i in range(n):
                place(next(real), base / part / "nature" / f"n{i:03d}.JPEG.png")
    return root


@pytest.fixture(scope="module")
def genimage_raw(realgen, tmp_path_factory) -> Path:
    """A raw GenImage-shaped tree, realgen images copied in; every image appears once."""
    return _build_genimage_tree(realgen, tmp_path_factory.mktemp("genimage"))


def _read(path: Path) -> list[tuple[str, int]]:
    return [
        (ln.split("\t")[0], int(ln.split("\t")[1])) for ln in path.read_text().splitlines() if ln
    ]


def test_shipped_protocols_match_the_published_splits():
    names = [p.name for p in list_protocols()]
    assert {f"genimage:split{i}" for i in range(1, 6)} <= set(names)
    assert {f"osma:split{i}" for i in range(1, 6)} <= set(names)
    assert "diffusionforensics" in names
    s1 = get_protocol("genimage:split1")
    assert list(s1.known) == ["real", "wukong", "Midjourney", "VQDM", "stable_diffusion_v_1_4"]
    assert s1.unknown_classes() == ["stable_diffusion_v_1_5", "BigGAN", "ADM", "glide"]
    generators = set(STAND_INS)
    for i in range(1, 6):
        p = get_protocol(f"genimage:split{i}")
        assert p.known[0] == "real" and len(p.known) == 5 and len(p.unknown_classes()) == 4
        assert set(p.known[1:]) | set(p.unknown_classes()) == generators
    for i in range(1, 6):
        p = get_protocol(f"osma:split{i}")
        assert len(p.known) == 15 and p.known[0] == "real"
        groups = {g: set(c) for g, c in p.unknown.items()}
        assert set(groups) == {"seed", "arch", "dataset", "all"}
        assert groups["all"] == groups["seed"] | groups["arch"] | groups["dataset"]
        assert not groups["all"] & set(p.known)
        # the "seed" group: the known ProGAN models trained with another seed
        assert all("ProGAN_seed" in c for c in groups["seed"])
    with pytest.raises(ProtocolError, match="genimage:split1"):
        get_protocol("genimage:split9")
    with pytest.raises(ProtocolError, match="no unknown group 'seed'"):
        s1.unknown_classes("seed")


def test_protocols_command_lists_every_protocol(capsys):
    assert main(["protocols"]) == 0
    out = capsys.readouterr().out
    assert "genimage:split3" in out and "osma:split5" in out and "diffusionforensics" in out
    assert main(["protocols", "--json"]) == 0
    specs = json.loads(capsys.readouterr().out)
    osma = next(s for s in specs if s["name"] == "osma:split2")
    assert osma["files"]["test_unknown"]["seed"] == [
        "split2_test/annotations/split2_test_out_seed.txt"
    ]


def test_raw_genimage_tree_gives_deterministic_capped_annotations(genimage_raw, tmp_path):
    a = resolve_protocol(
        "genimage:split1",
        genimage_raw,
        annotations=tmp_path / "a",
        train_per_class=12,
        test_per_class=5,
    )
    b = resolve_protocol(
        "genimage:split1",
        genimage_raw,
        annotations=tmp_path / "b",
        train_per_class=12,
        test_per_class=5,
    )
    assert a.generated == tmp_path / "a"
    rel = {r: f.relative_to(tmp_path / "a") for r, f in a.files.items() if f}
    assert rel == {
        "train": Path("split1_train/annotations/split1_train.txt"),
        "test_known": Path("split1_val/annotations/split1_val.txt"),
        "test_unknown": Path("split1_val/annotations/split1_val_out_all.txt"),
    }
    for role, f in a.files.items():
        if f:
            assert f.read_bytes() == b.files[role].read_bytes(), role  # same seed, same files
    assert a.files["val"] is None  # validation is carved from train, never the test files
    counts = a.counts()
    assert counts["train"] == {c: 12 for c in a.known}
    assert counts["test_known"] == {"real": 5} | {c: 5 for c in a.known[1:]}
    assert counts["test_unknown"] == {c: 5 for c in a.unknown}
    # labels: index into the known classes, and the image really comes from that folder
    for path, index in _read(a.files["train"]):
        label = a.known[index]
        assert Path(path).parts[0] == label or (label == "real" and "/nature/" in path)
        assert (genimage_raw / path).is_file()
    for path, index in _read(a.files["test_unknown"]):
        assert Path(path).parts[0] == a.unknown[index]
    train = {p for p, _ in _read(a.files["train"])}
    test = {p for p, _ in _read(a.files["test_known"]) + _read(a.files["test_unknown"])}
    assert not train & test and all("/train/" in p for p in train)
    assert all("/val/" in p for p in test)
    meta = json.loads((tmp_path / "a" / "split1_meta.json").read_text())
    assert meta["settings"]["seed"] == 0 and meta["counts"]["train"]["real"] == 12
    # a second resolution with the same settings rewrites nothing
    stamp = a.files["train"].stat().st_mtime_ns
    resolve_protocol(
        "genimage:split1",
        genimage_raw,
        annotations=tmp_path / "a",
        train_per_class=12,
        test_per_class=5,
    )
    assert a.files["train"].stat().st_mtime_ns == stamp
    # another seed picks other images
    c = resolve_protocol(
        "genimage:split1",
        genimage_raw,
        annotations=tmp_path / "c",
        seed=1,
        train_per_class=12,
        test_per_class=5,
    )
    assert c.files["train"].read_bytes() != a.files["train"].read_bytes()


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(ln + "\n" for ln in lines))


def test_official_osma_files_are_read_unchanged_with_unknown_groups(realgen, tmp_path, capsys):
    p = get_protocol("osma:split1")
    imgs = sorted((realgen / "real").iterdir())
    k = p.known
    # image paths relative to --root, labels = index into the known classes
    train = [f"real/{imgs[i].name}\t{i % 15}" for i in range(30)]
    val = [f"real/{imgs[i].name}\t{i % 15}" for i in range(30, 45)]
    test = [f"real/{imgs[i].name}\t{i % 15}" for i in range(45, 60)]
    seed = p.unknown["seed"]
    # unknown files: one line names its class by folder, the others only by index
    out_seed = [f"real/{imgs[60 + i].name}\t{i}" for i in range(len(seed))]
    out_all = out_seed + [f"real/{imgs[80].name}\t0", "missing/nowhere.png\t3"]
    ann = tmp_path / "ann"
    _write(ann / "split1_train/annotations/split1_train.txt", train)
    _write(ann / "split1_val/annotations/split1_val.txt", val)
    _write(ann / "split1_test/annotations/split1_test.txt", test)
    _write(ann / "split1_test/annotations/split1_test_out_seed.txt", out_seed)
    _write(ann / "split1_test/annotations/split1_test_out.txt", out_all)
    for g in ("arch", "dataset"):
        _write(ann / f"split1_test/annotations/split1_test_out_{g}.txt", [])
    rp = resolve_protocol("osma:split1", realgen, group="seed", annotations=ann)
    assert rp.files["val"] == ann / "split1_val/annotations/split1_val.txt"
    assert rp.counts()["train"] == {c: 2 for c in k}
    assert rp.counts()["test_unknown"] == {c: 1 for c in seed}
    assert rp.unknown == list(seed)
    everything = resolve_protocol("osma:split1", realgen, group="all", annotations=ann)
    assert len(everything.datasets["test_unknown"]) == len(seed) + 2
    assert everything.missing_images()["test_unknown"] == [str(realgen / "missing/nowhere.png")]
    # dry run: counts per class and role, the missing file, nothing extracted
    cache = tmp_path / "cache"
    rc = main(
        [
            "evaluate",
            "--protocol",
            "osma:split1",
            "--root",
            str(realgen),
            "--annotations",
            str(ann),
            "--dry-run",
            "--cache",
            str(cache),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and not cache.exists()
    assert "| FSGAN | 2 | 1 | 1 |" in out
    assert "missing (test_unknown): " + str(realgen / "missing/nowhere.png") in out
    assert "| missing files | 0 | 0 | 0 | 1 |" in out


def test_missing_annotation_files_name_what_was_tried(tmp_path, capsys):
    rc = main(["evaluate", "--protocol", "genimage:split2", "--root", str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "split2_train/annotations/split2_train.txt" in err and str(tmp_path) in err
    assert "raw GenImage tree" in err
    assert main(["evaluate", "--protocol", "genimage:split2", "--out", str(tmp_path / "r")]) == 2
    assert "--root DIR is required" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--protocol",
                "genimage:split2",
                "--root",
                str(tmp_path),
                "--known",
                "real",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "cannot be combined with --protocol" in capsys.readouterr().err


def test_evaluate_runs_a_genimage_protocol_from_the_raw_tree(genimage_raw, shared_cache, tmp_path):
    out = tmp_path / "run"
    ann = tmp_path / "ann"
    rc = main(
        [
            "evaluate",
            "--protocol",
            "genimage:split1",
            "--root",
            str(genimage_raw),
            "--annotations",
            str(ann),
            "--cache",
            str(shared_cache),
            "--out",
            str(out),
            "--no-progress",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "stage5",
            "--no-report",
        ]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    p = get_protocol("genimage:split1")
    assert res["known_classes"] == list(p.known)
    assert sorted(res["unknown_classes"]) == sorted(p.unknown_classes())
    assert res["title"] == "genimage:split1"
    counts = res["counts"]
    # train + val = the training file (validation carved from it); test = the test files
    for c in p.known[1:]:
        assert counts["train"][c] + counts["val"][c] == TRAIN_AI
        assert counts["test"][c] == VAL_AI
    assert counts["train"]["real"] + counts["val"]["real"] == 8 * TRAIN_NATURE
    assert counts["test"]["real"] == 8 * VAL_NATURE
    assert {c: counts["test"][c] for c in p.unknown_classes()} == {
        c: VAL_AI for c in p.unknown_classes()
    }
    assert set(res["open_set"]["per_unknown_auroc"]) == set(p.unknown_classes())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["protocol"] == "genimage:split1" and cfg["data"] is None
    # the validation images all come from the training file
    train_file = {
        ln.split("\t")[0]
        for ln in (ann / "split1_train/annotations/split1_train.txt").read_text().splitlines()
    }
    preds = (out / "predictions.csv").read_text().splitlines()[1:]
    tested = {Path(ln.split(",")[0]).relative_to(genimage_raw).as_posix() for ln in preds}
    assert not tested & train_file


def test_extract_and_fit_take_a_protocol(genimage_raw, shared_cache, tmp_path, capsys):
    ann = tmp_path / "ann"
    common = [
        "--protocol",
        "genimage:split3",
        "--root",
        str(genimage_raw),
        "--annotations",
        str(ann),
    ]
    assert (
        main(
            [
                "extract",
                *common,
                "--cache",
                str(shared_cache),
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                "stage5",
                "--no-progress",
            ]
        )
        == 0
    )
    # known generators: train + val folders; unknown ones: val only; real from every folder
    n_images = 4 * (TRAIN_AI + VAL_AI) + 4 * VAL_AI + 8 * (TRAIN_NATURE + VAL_NATURE)
    assert f"{n_images} images:" in capsys.readouterr().out
    model = tmp_path / "model"
    assert (
        main(
            [
                "fit",
                *common,
                "--cache",
                str(shared_cache),
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                "stage5",
                "--no-progress",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    meta = json.loads((model / "model.json").read_text())
    assert meta["classes"] == sorted(get_protocol("genimage:split3").known)
    # the bundle attributes most of a known generator's images to it (chance: 1 in 5)
    folder = next((genimage_raw / "ADM").rglob("train/ai"))
    capsys.readouterr()
    assert main(["predict", str(model), str(folder), "--json", "--no-progress"]) == 0
    preds = json.loads(capsys.readouterr().out)["results"]
    assert len(preds) == TRAIN_AI
    assert sum(p["closest"] == "ADM" for p in preds) >= TRAIN_AI // 2


def test_unwritable_annotation_folder_is_a_clear_error(genimage_raw, tmp_path, capsys):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the annotation folder should go")
    rc = main(
        [
            "evaluate",
            "--protocol",
            "genimage:split4",
            "--root",
            str(genimage_raw),
            "--annotations",
            str(blocked),
            "--dry-run",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and str(blocked) in err and "--annotations DIR" in err
    assert blocked.read_text() == "a file where the annotation folder should go"


def test_a_genimage_tree_of_symlinked_files_runs_without_options(
    realgen, genimage_raw, shared_cache, tmp_path
):
    """A hub-cache-shaped tree: every file is a link into a blob folder outside the root."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()

    def place(src: Path, dst: Path) -> None:
        blob = blobs / hashlib.sha256(src.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copyfile(src, blob)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(os.path.relpath(blob, dst.parent))

    root = _build_genimage_tree(realgen, tmp_path / "linked", place)
    out = tmp_path / "run"
    rc = main(
        [
            "evaluate",
            "--protocol",
            "genimage:split1",
            "--root",
            str(root),
            "--cache",
            str(shared_cache),
            "--out",
            str(out),
            "--no-progress",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "stage5",
            "--no-report",
        ]
    )
    assert rc == 0
    counts = json.loads((out / "results.json").read_text())["counts"]
    p = get_protocol("genimage:split1")
    for c in p.known[1:]:
        assert counts["train"][c] + counts["val"][c] == TRAIN_AI and counts["test"][c] == VAL_AI
    # the dataset records where each link leads
    ds = resolve_protocol("genimage:split1", root).datasets["train"]
    assert all(Path(s.extra["resolved_path"]).parent == blobs.resolve() for s in ds.samples)


def test_a_tree_of_broken_links_says_how_many_were_skipped_and_why(tmp_path, capsys):
    root = tmp_path / "broken"
    for gen in STAND_INS:
        for part in ("train", "val"):
            d = root / gen / "imagenet" / part / "ai"
            d.mkdir(parents=True)
            (d / "a.png").symlink_to(tmp_path / "gone.png")
    rc = main(
        [
            "evaluate",
            "--protocol",
            "genimage:split1",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc != 0
    assert "no images found" in err
    n = int(re.search(r"(\d+) file\(s\) skipped: broken symbolic link", err).group(1))
    assert 8 <= n <= 2 * len(STAND_INS)  # every link walked before giving up was counted
