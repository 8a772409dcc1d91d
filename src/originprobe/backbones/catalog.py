"""What `originprobe backbones` prints: every registered backbone, its layers, dimension and
whether its weights are on this machine (checked offline, without loading any model)."""

from __future__ import annotations

from .registry import BACKBONES, PREFIXES

_PREFIX_HELP = {
    "timm": (
        "timm:NAME",
        "any timm model (its own pretrained_cfg preprocessing)",
        "block0..blockN-1 or stage0..stageN-1",
        "width",
    ),
    "open_clip": (
        "open_clip:ARCH/PRETRAINED",
        "any open_clip vision transformer",
        "block0..blockN-1",
        "width",
    ),
    "learned": (
        "learned:ARCH",
        "a network trained here on the training split: forensic-cnn, efficientnet-lite0/1/2",
        "pool, embed",
        "width, 128",
    ),
    "hf": (
        "hf:ORG/NAME",
        "any Hugging Face vision or CLIP model (hidden states)",
        "block0..blockN-1",
        "hidden size",
    ),
}


def list_backbones() -> list[dict]:
    rows = []
    for name, spec in BACKBONES.items():
        try:
            available = bool(spec.weights_available())
        except Exception:  # noqa: BLE001 - a broken cache reads as "not available"
            available = False
        rows.append(
            {
                "name": name,
                "source": spec.source,
                "description": spec.description,
                "layers": spec.layers_hint,
                "dim": spec.dim_hint,
                "weights_available": available,
                "weights": spec.weights_hint,
            }
        )
    for prefix in PREFIXES.names():
        pattern, desc, layers, dim = _PREFIX_HELP.get(prefix, (f"{prefix}:...", "", "", ""))
        rows.append(
            {
                "name": pattern,
                "source": prefix,
                "description": desc,
                "layers": layers,
                "dim": dim,
                "weights_available": None,
                "weights": "trained by fit/evaluate, or --weights NETWORK.safetensors"
                if prefix == "learned"
                else "hub (cached, or downloaded) or --weights",
            }
        )
    return rows


def format_backbones_table(rows: list[dict]) -> str:
    head = ["name", "source", "layers", "dim", "weights here", "description"]
    body = [
        [
            r["name"],
            r["source"],
            r["layers"],
            r["dim"],
            {True: "yes", False: "no", None: "-"}[r["weights_available"]],
            r["description"],
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
        for row in [head, ["-" * w for w in widths], *body]
    ]
    return "\n".join(lines)


def backbones_text(as_json: bool = False) -> str:
    """What `originprobe backbones` prints."""
    import json

    from .registry import DEFAULT_BACKBONE

    rows = list_backbones()
    if as_json:
        return json.dumps(rows, indent=2)
    return (
        format_backbones_table(rows) + f"\n\ndefault: {DEFAULT_BACKBONE}\nany NAME@native or "
        "NAME@nativeSIZE reads un-resampled centre crops, NAME@nativeSIZExV V crops over the "
        "whole picture, pooled; A+B fuses backbones (layers MEMBER/LAYER)"
    )
