"""The configuration of a run: built and validated once, here, whether it comes from command-line
options (`RunConfig.from_options`) or from an earlier run's config.json (`RunConfig.replay`).

`RunConfig` is saved verbatim as RUN_DIR/config.json. It embeds the model's own value objects
whole: `SelectionConfig` (how the model is chosen), `TrainConfig` (how learned networks train) and
`Runtime` (where and how the run executes); their fields are command-line options too (generated
from the dataclasses, `options.nested`), so the API and the command line share one set of
defaults and rules. Every rule on a run's own values is checked in `validate`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..backbones import DEFAULT_BACKBONE
from ..data.perturb import parse_levels
from ..errors import ConfigError
from ..heads import HEADS
from ..model import DEFAULT_TARGET_TPR, SelectionConfig, check_params
from ..options import dataclass_options, nested, nested_values, option
from ..runtime import Runtime
from ..training import TrainConfig

DEFAULT_CACHE = ".cache/features"


#: named configurations (`--preset`); options given explicitly win over a preset's values.
#: Costs on 2 CPU cores and realgen's 5 splits are in the README ("Presets").
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {},  # the defaults: frozen EfficientNet-Lite0 + Lite2 features, linear head
    # the three Lite networks on resized pictures and Lite0 and Lite2 on native crops, every
    # layer concatenated
    "accurate": {
        "backbone": "efficientnet-lite0+efficientnet-lite1+efficientnet-lite2"
        "+efficientnet-lite0@native+efficientnet-lite2@native"
    },
}


def _opt(default: Any, group: str, help: str, cli_type: Any = None, **argparse_kw) -> Any:
    return option(default, help, group, cli_type, **argparse_kw)


def options(group: str) -> list[tuple[str, dict]]:
    """The command-line options of the RunConfig fields of `group` (nested ones included);
    where a registry lists the choices (engines, perturbations, losses), the help is its."""
    from ..data.perturb import PERTURBATIONS
    from ..runtime import ENGINES
    from ..training import LOSSES

    helps = {
        "--engine": "where extraction runs: "
        + "; ".join(f"{name}: {e.help}" for name, e in ENGINES.items()),
        "--robustness": "test-time perturbation curves, KIND=LEVEL,LEVEL;...: "
        + "; ".join(f"{n} ({k.help})" for n, k in PERTURBATIONS.items()),
        "--train-loss": "learned:ARCH networks: auto (each; known-only validation keeps the "
        "better), " + ", ".join(f"{n} ({c.help})" for n, c in LOSSES.items()),
    }
    out = []
    for flag, kw in dataclass_options(RunConfig, group, check_field_text):
        if flag in helps:
            default = kw["help"].rpartition(" (default:")
            kw = dict(kw, help=helps[flag] + (" (default:" + default[2] if default[1] else ""))
        out.append((flag, kw))
    return out


def _run_runtime() -> Runtime:
    return Runtime(cache=DEFAULT_CACHE, progress=True)


@dataclass
class RunConfig:
    """Everything that determines a run; saved verbatim as RUN_DIR/config.json."""

    data: str | None = _opt(
        None, "data", "folder tree <root>/<label>/..., manifest CSV (path,label) or annotation file"
    )
    known: list[str] = _opt(list, "data", "comma-separated known classes (with --data)", str)
    unknown: list[str] | None = _opt(
        None, "test", "unknown classes (default: every non-known test label)", str
    )
    test_data: str | None = _opt(None, "test", "separate test set (default: split --data)")
    class_names: str | None = _opt(None, "data", "class names, one per line (annotation files)")
    root: str | None = _opt(None, "data", "root that annotation-file paths are relative to")
    preset: str = _opt(
        "fast",
        "model",
        "fast: frozen EfficientNet-Lite0+Lite2 features (the defaults); accurate: the three "
        "Lite networks and two native-crop views fused (slower, see the README)",
        choices=tuple(PRESETS),
    )
    backbone: str = _opt(DEFAULT_BACKBONE, "backbone", "see `originprobe backbones`")
    weights: str | None = _opt(None, "backbone", "weights file or directory for the backbone")
    layers: str = _opt("all", "backbone", '"all", or layers "a,b"; "a+b" concatenates')
    head: str = _opt("linear", "model", "a head: " + ", ".join(HEADS.names()))
    score: str = _opt(
        "auto", "model", "open-set score, or auto (chosen by leave-one-known-generator-out)"
    )
    target_tpr: float = _opt(
        DEFAULT_TARGET_TPR, "model", "share of known images the reject threshold keeps"
    )
    seed: int = _opt(0, "model", "seed of splits, folds and heads")
    selection: SelectionConfig = nested(SelectionConfig)
    training: TrainConfig = nested(TrainConfig, "train_")
    runtime: Runtime = nested(Runtime, default=_run_runtime)
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    strict: bool = False
    jpeg_align: int | None = _opt(
        None,
        "studies",
        "also evaluate with every image JPEG-recompressed at QUALITY",
        metavar="QUALITY",
    )
    robustness: str | None = _opt(
        None,
        "studies",
        'test-time perturbation curves, e.g. "jpeg=90,70;blur=1,2"',
        nargs="?",
        const="default",
        metavar="SPEC",
    )
    low_data: str | None = _opt(
        None, "studies", "training images per class, e.g. 5,10,20", metavar="N,N,..."
    )
    low_data_seeds: int = _opt(3, "studies", "subsets drawn per low-data size")
    discover: bool = _opt(
        False, "studies", "cluster the test images the model rejects (results: discovery)"
    )
    save_model: bool = _opt(
        False, "studies", "also save the fitted model in RUN/model, its card with the test figures"
    )
    protocol: str | None = _opt(
        None,
        "data",
        "instead of --data/--known: genimage:split1, "
        "osma:split3, realgen ...; see `originprobe protocols`",
    )
    group: str = _opt("all", "data", "unknown group of the protocol")
    annotations: str | None = _opt(
        None, "data", "folder of the protocol's annotation files (default: --root)"
    )
    train_per_class: int | None = _opt(
        None, "data", "cap per class when annotations are made from the raw GenImage tree"
    )
    test_per_class: int | None = _opt(None, "data", "same, for the test files")
    allow_outside_root: bool = _opt(
        False,
        "data",
        "let paths written in manifests and annotation files point outside the dataset root",
    )
    pretrain: str | None = _opt(
        None,
        "training",
        "learned:ARCH: first train it to tell apart the classes of this folder tree of real "
        "photos (e.g. camera models), then on the known classes",
        metavar="DIR",
    )
    seeds: list[int] | None = _opt(
        None,
        "studies",
        "repeat the split and fit with each seed; report mean ± std",
        str,
        metavar="S,S,...",
    )

    @property
    def title(self) -> str:
        if self.protocol:
            return self.protocol + (f" (unknown: {self.group})" if self.group != "all" else "")
        p = Path(self.data or "")
        return p.parent.name if p.name.lower() == "manifest.csv" else p.name

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fractions"] = list(self.fractions)
        d["selection"] = self.selection.to_dict()
        return d

    def __post_init__(self) -> None:
        self.selection = SelectionConfig.of(self.selection)
        self.training = TrainConfig.of(self.training)
        self.runtime = Runtime.of(self.runtime)
        self.validate()

    def validate(self) -> None:
        """Every rule on a run's values, in one place (the model's own via `check_params`, the
        nested values' in their own classes)."""
        check_params(head=self.head, score=self.score, target_tpr=self.target_tpr, seed=self.seed)
        for f in dataclasses.fields(self):
            check_field(f.name, getattr(self, f.name))
        if not self.protocol and not self.data:
            raise ConfigError("give --data and --known, or --protocol NAME --root DIR")
        if self.protocol and (self.data or self.known or self.unknown):
            raise ConfigError(
                "--data, --known and --unknown cannot be combined with --protocol: "
                "the protocol fixes data and classes"
            )

    def model_params(self) -> dict:
        """The Attributor's parameters this run asks for (`Attributor(**cfg.model_params())`)."""
        return dict(
            backbone=self.backbone, layers=self.layers, head=self.head, score=self.score,
            target_tpr=self.target_tpr, weights=self.weights, seed=self.seed,
            selection=self.selection, training=self.training, pretrain=self.pretrain,
            runtime=self.runtime,
        )  # fmt: skip

    @classmethod
    def from_options(cls, opts: Mapping[str, Any], need_known: bool = True) -> "RunConfig":
        """The configuration the command-line options (`vars(namespace)`) describe; unset
        options (None) take the defaults. `config` in `opts` replays an earlier run instead."""
        if opts.get("config"):
            return cls.replay(opts["config"], opts)
        known = _names(opts.get("known"))
        if opts.get("known") is not None and not opts.get("protocol") and not known:
            raise ConfigError("--known names no class")
        if not opts.get("protocol") and opts.get("data") and need_known and not known:
            raise ConfigError("give --data and --known, or --protocol NAME --root DIR")
        if not opts.get("protocol") and not opts.get("data"):
            raise ConfigError(
                "give --data and --known, or --protocol NAME --root DIR"
                if need_known
                else "give DATA or --protocol NAME --root DIR"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: v for k, v in opts.items() if k in names and v is not None}
        values = {**PRESETS[values.get("preset", "fast")], **values}
        inner = nested_values(cls, dict(opts))
        inner["runtime"] = {**_run_runtime().to_dict(), **inner["runtime"],
                            **_flush(opts.get("flush_every")),
                            "progress": not opts.get("quiet", False)}  # fmt: skip
        values.update(inner)
        values.update(known=known or [], unknown=_names(opts.get("unknown")))
        if isinstance(opts.get("seeds"), str):
            values["seeds"] = _whole_numbers(opts["seeds"], "--seeds")
        values.setdefault("data", None)
        return cls(**values)

    @classmethod
    def replay(cls, path: str | Path, opts: Mapping[str, Any] | None = None) -> "RunConfig":
        """An earlier run's configuration (its config.json), to run it again; only the runtime
        settings (`Runtime`: cache, device, batch size, workers, engine, progress ...) may
        change."""
        opts = dict(opts or {})
        for flag in ("data", "known", "unknown", "test_data", "protocol", "root"):
            if opts.get(flag):
                raise ConfigError(
                    f"--{flag.replace('_', '-')} cannot be combined with --config: "
                    "the configuration fixes data and classes"
                )
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read a configuration ({exc})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: not a configuration (a JSON object is expected)")
        cfg = cls.from_dict(d, str(path))
        changes = {**nested_values(cls, opts)["runtime"], **_flush(opts.get("flush_every"))}
        if "quiet" in opts:
            changes["progress"] = not opts["quiet"]
        return replace(cfg, runtime=cfg.runtime.replace(**changes))

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "RunConfig":
        """A configuration written by a run (its config.json), checked field by field; one
        written before the nested settings existed (flat `device`, `train_loss` ...) is read
        into them."""
        d = _unflatten(dict(d))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"{where}: unknown setting(s) {unknown}; is this an originprobe config.json?"
            )
        if "fractions" in d:
            d["fractions"] = tuple(d["fractions"])
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None


#: settings of older config.json files, by the nested field they now belong to
_FLAT = {
    "runtime": {"cache": "cache", "batch_size": "batch_size", "workers": "workers",
                "device": "device", "runtime": "backend", "engine": "engine",
                "address": "address", "flush_every": "flush_every",
                "flush_seconds": "flush_seconds", "progress": "progress"},
    "training": {"train_loss": "loss", "train_epochs": "epochs", "train_patch": "patch"},
    "selection": {"combine_layers": "combine_layers"},
}  # fmt: skip


def _unflatten(d: dict) -> dict:
    for outer, keys in _FLAT.items():
        moved = {new: d.pop(old) for old, new in keys.items() if not isinstance(d.get(old), dict)
                 and old in d}  # fmt: skip
        if moved:
            d[outer] = {**moved, **(d.get(outer) or {})}
    if d.get("score") is None and "score" in d:
        d["score"] = "auto"
    return d


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _whole_numbers(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: give whole numbers, e.g. 5,10,20") from None


_AT_LEAST = {"train_per_class": 1, "test_per_class": 1, "low_data_seeds": 1}
#: nested settings by their option prefix, checked by building their class with one value
_NESTED = (("train_", TrainConfig), ("", SelectionConfig), ("", Runtime))


def check_field(name: str, value: Any) -> None:
    """The rule on one configuration value (None: unset, always allowed)."""
    if value is None:
        return
    if name in _AT_LEAST and value < _AT_LEAST[name]:
        raise ConfigError(
            f"--{name.replace('_', '-')} must be at least {_AT_LEAST[name]}, got {value}"
        )
    elif name in ("seed", "target_tpr"):
        check_params(**{name: value})
    elif name == "jpeg_align" and not 1 <= value <= 100:
        raise ConfigError(f"--jpeg-align must be a JPEG quality in 1..100, got {value}")
    elif name == "low_data" and min(_whole_numbers(value, "--low-data"), default=0) < 1:
        raise ConfigError(f"--low-data {value}: give positive whole numbers, e.g. 5,10,20")
    elif name == "seeds" and (not value or min(value) < 0 or len(set(value)) != len(value)):
        raise ConfigError(f"--seeds must be distinct whole numbers ≥ 0, got {value}")
    elif name == "pretrain" and not Path(value).is_dir():
        raise ConfigError(f"--pretrain {value}: not a folder (a tree <label>/<images>)")
    elif name == "preset" and value not in PRESETS:
        raise ConfigError(f"unknown preset {value!r}; presets: {', '.join(PRESETS)}")
    elif name == "robustness":
        parse_levels(value)


def check_nested(name: str, value: Any) -> None:
    """The rule on one nested setting given as an option (`train_epochs`, `folds`, `device`):
    its class built with that one value."""
    for prefix, cls in _NESTED:
        field = name[len(prefix) :] if name.startswith(prefix) else None
        if field in {f.name for f in dataclasses.fields(cls)}:
            cls(**{field: value})
            return


def parse_flush(text: str) -> dict:
    """--flush-every: "512" → every 512 images; "20s" → every 20 seconds."""
    key = "flush_seconds" if str(text).endswith("s") else "flush_every"
    try:
        value = (float if key == "flush_seconds" else int)(str(text).rstrip("s"))
        Runtime(**{key: value})
    except (ValueError, ConfigError):
        raise ConfigError(
            f"--flush-every {text!r}: give a number of images (512) or of seconds (20s)"
        ) from None
    return {key: value}


def _flush(values) -> dict:
    out: dict = {}
    for every in values or []:
        out.update(parse_flush(every))
    return out


def check_field_text(name: str, value: Any) -> None:
    """`check_field` for a value as the command line gives it (lists as comma-separated text)."""
    if name in {f.name for f in dataclasses.fields(RunConfig)}:
        check_field(name, _whole_numbers(value, "--seeds") if name == "seeds" else value)
    else:
        check_nested(name, value)


def flush_option() -> tuple[str, dict]:
    """The --flush-every option (two fields, flush_every and flush_seconds, from one flag)."""
    import argparse

    def parse(text: str) -> str:
        try:
            parse_flush(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return (
        "--flush-every",
        dict(
            type=parse,
            action="append",
            metavar="N|Ts",
            help="commit features every N images and/or T seconds (default: 512, 30s)",
        ),
    )
