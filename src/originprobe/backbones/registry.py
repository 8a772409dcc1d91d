"""The backbone registry: every backbone originprobe can build, by name.

`load_backbone(name)` returns a ready, frozen `Backbone` that knows its preprocessing and layers.
Names are registry entries (`efficientnet-lite0`, `clip-vit-b16`, ...) or open-ended prefixes
handled by a family (`timm:NAME`, `open_clip:ARCH/PRETRAINED`, `hf:ORG/NAME`). Each family module
registers its entries when `originprobe.backbones` imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from ..registry import Registry
from .base import Backbone, BackboneSpec, UnknownBackboneError

BACKBONES: "Registry[BackboneSpec]" = Registry("backbone")
PREFIXES: "Registry[Callable[..., Backbone]]" = Registry("backbone prefix", "backbone prefixes")
#: chosen by the 5-split study on known-only cross-validation (README, "Which configuration");
#: selection chooses which of the two members a model keeps
DEFAULT_BACKBONE = "efficientnet-lite0+efficientnet-lite2"


def register(spec: BackboneSpec) -> BackboneSpec:
    return BACKBONES.register(spec.name, spec)


def register_prefix(prefix: str, builder: Callable[..., Backbone]) -> None:
    """`builder(identifier, weights=...)` builds backbones named `prefix:identifier`."""
    PREFIXES.register(prefix, builder)


def load_backbone(
    name: str = DEFAULT_BACKBONE, weights: str | Path | None = None, **kw
) -> Backbone:
    """The backbone `name`: a registry entry, `prefix:identifier`, either with `@native[SIZE][xVIEWS]`
    (un-resampled crops), or several of those joined by `+` (a fusion; see backbones.fusion)."""
    bb = _load(name, weights, **kw)
    object.__setattr__(
        bb,
        "spec_",
        (
            name,
            None
            if weights is None
            else str(Path(weights).resolve())
            if Path(weights).exists()
            else str(weights),
            kw.get("networks") or None,  # learned members' network files (Ray workers load them)
        ),
    )
    return bb


_BUILT: dict[tuple, Backbone] = {}  # registered backbones built in this process, pristine


def _built(name: str, weights, kw: dict) -> Backbone:
    """A registered backbone: built (weights read and verified) once per process and settings,
    then handed out as copies, so callers may change their copy (`@native` does)."""
    import copy

    key = (name, None if weights is None else str(Path(weights).resolve()),
           tuple(sorted((k, repr(v)) for k, v in kw.items())))  # fmt: skip
    if key not in _BUILT:
        _BUILT[key] = BACKBONES.get(name).build(weights=weights, **kw)
    return copy.deepcopy(_BUILT[key])


def _load(name: str, weights: str | Path | None, **kw) -> Backbone:
    from .fusion import FusedBackbone, as_native, split_fusion, split_variant

    members = split_fusion(name)
    if len(members) > 1:
        if weights is not None:
            raise ConfigError(f"--weights cannot be given for a fusion of backbones ({name})")
        return FusedBackbone([load_backbone(m, **kw) for m in members])
    networks = kw.pop("networks", None)  # {"learned:ARCH": trained network file}
    base, native = split_variant(name)
    if native is not None:
        return as_native(load_backbone(base, weights=weights, networks=networks, **kw), *native)
    if name in BACKBONES:
        return _built(name, weights, kw)
    prefix, sep, ident = name.partition(":")
    if sep and prefix in PREFIXES and ident:
        if networks and any(k.startswith(prefix + ":") for k in networks):
            kw["networks"] = networks
        return PREFIXES.get(prefix)(ident, weights=weights, **kw)
    known = ", ".join(BACKBONES.names()) + "".join(f", {p}:..." for p in PREFIXES.names())
    raise UnknownBackboneError(f"unknown backbone {name!r}; known: {known}")
