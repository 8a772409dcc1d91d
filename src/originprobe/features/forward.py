"""The forward pass: decoded, preprocessed batches in, one float32 array per layer out.

Shared by the local engine (`features.extract`) and the Ray engine (`features.ray_engine`);
neither engine imports the other's internals. Decoding and preprocessing run in a pool of
threads, ordered, with a bounded read-ahead, while the model runs in the calling thread.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..backbones.base import Backbone
from ..data.images import ImageDecodeError
from ..data.inputs import ImageInput, ImageTransform
from ..errors import ConfigError
from ..runtime import autocast_for, resolve_device


@dataclass
class Batch:
    index: list[int]  # positions (in the input order) of the images in `x`
    x: torch.Tensor | None  # uint8 (B, 3, H, W)
    errors: list[tuple[int, str]]  # (position, reason)
    warnings: list[tuple[int, str]]


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 2))


def default_batch_size(backbone: Backbone, device: torch.device) -> int:
    if device.type == "cuda":
        from ..backbones.transformer import suggest_batch_size

        return suggest_batch_size(backbone, device)
    return 16  # on a CPU larger batches are not faster, and cost memory


def preprocess_one(
    inp: ImageInput, pre, transform: ImageTransform | None = None
) -> tuple[torch.Tensor | None, str | None, str | None]:
    """(uint8 pixels or None, error, warning) of one input: decoded, transformed, preprocessed.
    Never raises: a bug in a transform must not kill a million-image run."""
    try:
        dec = inp.decode(pre.draft_size)
        img = transform(dec.image) if transform is not None else dec.image
        return pre.to_uint8(img), None, dec.warning
    except ImageDecodeError as exc:
        return None, exc.reason, None
    except Exception as exc:  # noqa: BLE001
        return None, f"preprocessing failed: {type(exc).__name__}: {exc}", None


def iter_batches(
    inputs: Iterable[ImageInput],
    backbone: Backbone,
    batch_size: int,
    workers: int,
    transform: ImageTransform | None = None,
) -> Iterator[Batch]:
    """Decoded, preprocessed uint8 batches in input order; decoding runs ahead in threads.
    `inputs` is consumed lazily (a generator may claim work as it is pulled); positions in the
    batches count the inputs in the order they were pulled."""
    pre = backbone.preprocessing

    def work(pos: int, inp: ImageInput):
        return (pos, *preprocess_one(inp, pre, transform))

    def emit(results) -> Batch:
        ok = [(i, x) for i, x, _, _ in results if x is not None]
        return Batch(
            [i for i, _ in ok],
            torch.stack([x for _, x in ok]) if ok else None,
            [(i, e) for i, x, e, _ in results if x is None],
            [(i, w) for i, x, _, w in results if x is not None and w],
        )

    source = enumerate(inputs)
    if workers <= 0:
        results = []
        for pos, inp in source:
            results.append(work(pos, inp))
            if len(results) == batch_size:
                yield emit(results)
                results = []
        if results:
            yield emit(results)
        return
    ahead = max(2 * batch_size, 4 * workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        results = []
        exhausted = False
        while True:
            while not exhausted and len(pending) < ahead:
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                else:
                    pending.append(pool.submit(work, *nxt))
            if not pending:
                break
            results.append(pending.popleft().result())
            if len(results) == batch_size:
                yield emit(results)
                results = []
        if results:
            yield emit(results)


class ForwardRunner:
    """The backbone on its device: uint8 batch in, one float32 numpy array per layer out.
    On a CPU, ONNX Runtime runs the forward pass when `backend` allows it (see backbones.onnxrt)."""

    def __init__(self, backbone: Backbone, layers: Sequence[str], device, backend: str = "auto"):
        from ..backbones.onnxrt import OnnxForward, choose_backend

        self.device = resolve_device(device)
        self.layers = list(layers)
        unknown = [l for l in self.layers if l not in backbone.layer_names]
        if unknown:
            raise ConfigError(
                f"{backbone.name} has no layers {unknown}; it has {backbone.layer_names}"
            )
        self.runtime = choose_backend(backend, backbone, self.device)
        self.onnx = None
        if self.runtime == "onnx":  # one session per backbone object, reused by later calls
            self.onnx = backbone.__dict__.get("_onnx_forward")
            if self.onnx is None:
                self.onnx = OnnxForward(backbone)
                object.__setattr__(backbone, "_onnx_forward", self.onnx)
        self.channels_last = self.device.type == "cuda" or getattr(
            backbone, "prefers_channels_last", True
        )
        bb = backbone.to(self.device).eval() if self.onnx is None else backbone
        self.backbone = (
            bb.to(memory_format=torch.channels_last)
            if self.channels_last and self.onnx is None
            else bb
        )

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        if x.dim() == 5:  # several views per image: their features are averaged
            b, v = x.shape[:2]
            feats = self._forward(x.flatten(0, 1))
            return {l: f.reshape(b, v, -1).mean(1) for l, f in feats.items()}
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        if self.onnx is not None:
            return self.onnx(self.backbone.preprocessing.normalize(x), self.layers)
        x = x.to(self.device, non_blocking=True)
        x = self.backbone.preprocessing.normalize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(self.device):
            feats = self.backbone(x)
        # copies: a view of a block's class token would keep the whole token tensor alive
        return {
            l: np.array(feats[l].float().cpu().numpy(), dtype=np.float32, copy=True)
            for l in self.layers
        }
