"""The model card every bundle carries (README.md, the Hugging Face Hub's format), generated from
model.json alone: the same description gives the same card, byte for byte.

Its YAML front matter holds `library_name: originprobe`, the tags, the classes, the backbone and
its weights id, and `model-index` with the known-only estimate that chose the model (and, for a
model saved by `evaluate --save-model`, its test figures with the protocol and split). Its body
says what the model does, how to use it, what it was trained on, its threshold and its limits.
The bundle lists the card with its sha256 like every other file, so an edited card is refused
on load.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
TAGS = ["image-forensics", "synthetic-image-attribution", "open-set", "originprobe"]


def training_data(samples: Iterable[Any]) -> dict:
    """What the card says of the training images: the folders they came from (up to 5), how many
    per class, and a sha256 over the sorted (content hash, label) list, which names the exact set
    without listing it."""
    import hashlib

    samples = list(samples)
    per_class: dict[str, int] = {}
    for s in samples:
        per_class[s.label] = per_class.get(s.label, 0) + 1
    roots = sorted({str(_root(Path(s.path))) for s in samples if getattr(s, "path", None)})
    lines = sorted(f"{s.sha256 or ''}  {s.label}" for s in samples)
    return {
        "images": len(samples),
        "per_class": dict(sorted(per_class.items())),
        "roots": roots[:5] + ([f"… and {len(roots) - 5} more"] if len(roots) > 5 else []),
        "list_sha256": hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest(),
    }


def _root(path: Path) -> Path:
    """The dataset folder an image came from: two levels above the file (ROOT/CLASS/FILE)."""
    parents = path.parents
    return parents[1] if len(parents) > 2 else parents[0]


def _metric(kind: str, name: str, value) -> dict | None:
    return None if value is None else {"type": kind, "name": name, "value": round(float(value), 4)}


def _results(meta: Mapping) -> list[dict]:
    est = (meta.get("selection") or {}).get("estimate") or {}
    task = {"type": "image-classification", "name": "Open-set synthetic image origin attribution"}
    out = [{
        "task": task,
        "dataset": {"name": "known-class training images (cross-validated; each known generator "
                            "withheld in turn)", "type": "originprobe-known-only"},
        "metrics": [m for m in (
            _metric("balanced_accuracy", "cross-validated balanced accuracy",
                    est.get("balanced_accuracy")),
            _metric("roc_auc", "AUROC, known vs withheld generators", est.get("auroc")),
            _metric("oscr", "OSCR, withheld generators", est.get("oscr")),
            _metric("rejected", "withheld generators' images rejected", est.get("rejected")),
        ) if m],
    }]  # fmt: skip
    test = ((meta.get("card") or {}).get("test")) or None
    if test:
        out.append({
            "task": task,
            "dataset": {"name": test.get("protocol") or "test set", "type": "originprobe-test",
                        "split": test.get("split") or "test"},
            "metrics": [m for m in (
                _metric("accuracy", "closed-set accuracy (known classes)", test.get("accuracy")),
                _metric("roc_auc", "AUROC, known vs unseen generators", test.get("auroc")),
                _metric("oscr", "OSCR", test.get("oscr")),
                _metric("rejected", "unseen generators' images rejected at the threshold",
                        test.get("unseen_rejected")),
            ) if m],
        })  # fmt: skip
    return out


def card_metadata(meta: Mapping) -> dict:
    """The card's YAML front matter, as data."""
    bb = meta["backbone"]
    return {
        "library_name": "originprobe",
        "tags": list(TAGS),
        "pipeline_tag": "image-classification",
        "originprobe": {
            "classes": list(meta["classes"]),
            "backbone": bb.get("name") or "features",
            "weights_id": bb.get("weights_id") or "",
            "layer": meta["layer"],
            "head": meta["head"]["name"],
            "score": meta["score"]["name"],
            "threshold": meta["threshold"],
            "target_tpr": meta["params"].get("target_tpr"),
            "version": meta["originprobe_version"],
        },
        "model-index": [{"name": f"originprobe-{bb.get('name') or 'features'}",
                         "results": _results(meta)}],
    }  # fmt: skip


def render_card(meta: Mapping, repo_id: str | None = None) -> str:
    """README.md for a bundle's model.json `meta` (`repo_id`: how the usage line names it)."""
    import yaml

    front_data = card_metadata(meta)
    front = yaml.safe_dump(front_data, sort_keys=False, allow_unicode=True, width=100)
    info = front_data["originprobe"]
    data = (meta.get("card") or {}).get("training_data") or {}
    est = (meta.get("selection") or {}).get("estimate") or {}
    ref = f"hf://{repo_id}" if repo_id else "hf://ORG/NAME"
    classes = ", ".join(meta["classes"])
    per_class = "\n".join(f"| {c} | {n} |" for c, n in (data.get("per_class") or {}).items())
    rejected = est.get("rejected")
    lines = [
        "---", front.rstrip(), "---", "",
        f"# originprobe model: {classes}", "",
        "An open-set origin attributor: given an image, it names which of the known classes "
        f"made it ({classes}), or answers `unknown` when the image looks made by none of them. "
        f"Features come from the frozen backbone `{info['backbone']}` (layer `{info['layer']}`); "
        f"a `{info['head']}` head decides, and the `{info['score']}` score rejects unknowns.", "",
        "## How to use it", "", "```bash", "pip install originprobe",
        f"originprobe predict {ref} image.jpg", f"originprobe serve {ref}", "```", "",
        "```python", "from originprobe import Attributor",
        f'att = Attributor.load("{ref}")', 'print(att.predict(["image.jpg"])[0].label)', "```",
        "", "## Training data", "",
        f"{data.get('images', 'unknown number of')} images from "
        f"{', '.join(data.get('roots') or []) or 'features given directly'}; the sha256 of the "
        f"sorted (content hash, label) list is `{data.get('list_sha256') or 'n/a'}`.", "",
        "| class | images |", "|---|---|", per_class or "| – | – |", "",
        "## Threshold", "",
        f"Images scoring below {float(meta['threshold']):.6g} are `unknown`. The threshold keeps "
        f"{float(info['target_tpr'] or 0):.0%} of the known classes' images (out-of-fold scores "
        "on the training images).", "",
        "## Limits", "",
        "- It names only the classes above; every other generator can at best be `unknown`.",
        "- Rejection of unknown generators is estimated, with each known generator withheld in "
        "turn, at " + (f"{rejected:.0%}" if rejected is not None else "an unmeasured rate") +
        " of their images; generators unlike any it knows may be rejected more or less often.",
        "- A verdict is a statistical estimate from the pixels, not proof of origin.", "",
        "Generated from model.json by originprobe; do not edit (a changed card is refused on "
        "load).", "",
    ]  # fmt: skip
    return "\n".join(lines)


def test_figures(results: Mapping, protocol: str | None, split: str | None) -> dict:
    """The test figures a card shows, from an `evaluate` results.json."""
    return {
        "protocol": protocol, "split": split,
        "accuracy": (results.get("closed_set") or {}).get("accuracy"),
        "auroc": (results.get("open_set") or {}).get("auroc"),
        "oscr": (results.get("open_set") or {}).get("oscr"),
        "unseen_rejected": (results.get("thresholded") or {}).get("unknown_rejected"),
    }  # fmt: skip


def front_matter(text: str) -> dict:
    """A card's YAML front matter as data (ValueError when it has none)."""
    import yaml

    if not text.startswith("---\n"):
        raise ValueError("no YAML front matter")
    body, sep, _ = text[4:].partition("\n---\n")
    if not sep:
        raise ValueError("unterminated YAML front matter")
    data = yaml.safe_load(body)
    if not isinstance(data, dict):
        raise ValueError("YAML front matter is not a mapping")
    return data


__all__: Sequence[str] = ["CARD_FILE", "card_metadata", "front_matter", "render_card",
                          "test_figures", "training_data"]  # fmt: skip
