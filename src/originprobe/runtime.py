"""Where and how originprobe runs: one `Runtime` value, and the device helpers.

A `Runtime` never changes what is computed, only where and how fast: the torch device, the
forward batch size, decoding threads, the forward-pass backend (ONNX Runtime or PyTorch on a CPU),
the engine that runs extraction (`ENGINES`: here, or a Ray cluster), the feature cache and how
often it commits, and progress bars. It travels whole, from the command line or the Python API
down to extraction, training and selection; nothing below takes these settings one by one.

    rt = Runtime(device="cuda", batch_size=128)
    rt = Runtime.of({"device": "cpu", "workers": 0})    # a mapping of its fields works too
    rt.engine_entry().name                               # "local"

This module imports torch only inside the device helpers, and nothing from the package but the
base modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .options import option
from .registry import Registry

if TYPE_CHECKING:
    import torch

#: extraction engines by name ("local", "ray"); entries are registered by `features.engines`
ENGINES: Registry[Any] = Registry("engine")
#: forward-pass backends on a CPU
BACKENDS = ("auto", "torch", "onnx")


class DeviceError(ConfigError):
    """A device that does not exist or is not available on this machine."""


@dataclass(frozen=True)
class Runtime:
    """Where and how a run executes; never what it computes (see the module doc).

    Parameters
    ----------
    device : str or None
        ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; None picks CUDA when available.
    batch_size : int or None
        Images per forward pass; None: 16 on a CPU, from free memory on a GPU.
    workers : int or None
        Decoding threads; 0 decodes in the calling thread; None: up to 4.
    backend : str
        Forward-pass backend on a CPU: ``auto`` (ONNX Runtime when installed and the backbone
        exports), ``torch`` or ``onnx``. Its command-line flag is ``--runtime``.
    engine : str
        Where extraction and selection run: ``local`` or ``ray`` (see `ENGINES`).
    address : str or None
        With ``engine="ray"``: the cluster (``auto``, ``HOST:PORT``); None starts a local one.
    cache : str or None
        Feature cache directory; None keeps features in a temporary one for the call.
    flush_every, flush_seconds : int, float
        The feature cache commits every `flush_every` images or `flush_seconds` seconds.
    progress : bool
        Progress bars on stderr.
    """

    device: str | None = option(
        None, "cpu, cuda, cuda:1 ... (default: cuda when available)", "runtime"
    )
    batch_size: int | None = option(
        None, "images per forward pass (default: 16 on a CPU, from GPU memory)", "runtime"
    )
    workers: int | None = option(
        None, "decoding threads; 0: the main thread (default: up to 4)", "runtime"
    )
    backend: str = option(
        "auto",
        "forward pass engine; auto: ONNX Runtime on a CPU when installed and the backbone "
        "exports, else PyTorch",
        "runtime",
        choices=BACKENDS,
        flag="--runtime",
    )
    engine: str = option(
        "local", "where extraction runs: here, or a Ray cluster (pip install 'originprobe[ray]')",
        "engine",
    )  # fmt: skip
    address: str | None = option(
        None, "with --engine ray: the cluster (auto, HOST:PORT); default: a new local one",
        "engine",
    )  # fmt: skip
    cache: str | None = option(None, "feature cache directory", "engine")
    flush_every: int = 512
    flush_seconds: float = 30.0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ConfigError(f"batch size must be ≥ 1, got {self.batch_size}")
        if self.workers is not None and int(self.workers) < 0:
            raise ConfigError(f"workers must be ≥ 0, got {self.workers}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"runtime {self.backend!r}: use one of {', '.join(BACKENDS)}")
        if int(self.flush_every) < 1 or float(self.flush_seconds) <= 0:
            raise ConfigError("flush_every must be ≥ 1 image and flush_seconds > 0")
        if len(ENGINES) and self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")

    @classmethod
    def of(cls, value: "Runtime | Mapping[str, Any] | None" = None, **changes: Any) -> "Runtime":
        """A Runtime from a Runtime, a mapping of its fields, or None (the defaults), with
        `changes` applied; an unknown field is an error naming it."""
        if value is None:
            base = cls()
        elif isinstance(value, Runtime):
            base = value
        elif isinstance(value, Mapping):
            base = cls(**_known_fields(cls, value, "runtime"))
        else:
            raise ConfigError(f"runtime must be a Runtime or a mapping, not {type(value).__name__}")
        return dataclasses.replace(base, **_known_fields(cls, changes, "runtime")) if changes \
            else base  # fmt: skip

    def replace(self, **changes: Any) -> "Runtime":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def engine_entry(self) -> Any:
        """The registered engine (features.engines) this runtime names."""
        return ENGINES.get(self.engine)

    def torch_device(self) -> "torch.device":
        return resolve_device(self.device)


def _known_fields(cls: type, values: Mapping[str, Any], what: str) -> dict:
    names = {f.name for f in fields(cls)}
    bad = sorted(set(values) - names)
    if bad:
        raise ConfigError(f"{what} has no setting(s) {bad}; it has {', '.join(sorted(names))}")
    return dict(values)


def resolve_device(name: "str | torch.device | None") -> "torch.device":
    """The torch device for `name` (None: cuda when available, else cpu); a clear error for a
    device that does not exist or is not available here."""
    import torch

    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"--device {name!r}: not a device (use cpu, cuda, cuda:N or mps)"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name!r}: CUDA is not available on this machine "
                "(no GPU or no CUDA driver); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"--device {name!r}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise DeviceError(f"--device {name!r}: unsupported device type {dev.type!r}")
    return dev


def autocast_for(device: "torch.device"):
    """bf16 (fp16 where bf16 is missing) autocast on CUDA; nothing elsewhere."""
    import torch

    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)
