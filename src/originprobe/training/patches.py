"""Training images held decoded, and the native-resolution patches cut from them.

`PatchBank` decodes every image once (in threads, with the run's perturbation, e.g. JPEG
alignment) and keeps an un-resampled uint8 region of it; an epoch is a seeded, class-balanced draw
of random patches with random flips from those regions. `ActivationBank` keeps, instead, the
activation map of a network's frozen first stages over each region (computed once), and an epoch
draws random windows of it, so only the later stages run while training. `ViewBank` keeps what a
trained network reads at inference, for validation. Nothing here is ever resampled.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ..backbones.base import Preprocessing
from ..backbones.learned import network_preprocessing
from ..data import Problem, Sample
from ..data.inputs import ImageInput, ImageTransform
from ..features.forward import default_workers, preprocess_one

#: decoded training pixels kept in memory at most; larger sets keep smaller regions per image
BANK_BYTES = 3 * 2**30


def _decode_labelled(
    samples: Sequence[Sample],
    classes: Sequence[str],
    pre: Preprocessing,
    transform: ImageTransform | None,
) -> tuple[list[torch.Tensor], torch.Tensor, list[Problem]]:
    """(pixels of the readable samples, their class indices, what could not be read), decoded in
    threads."""
    from concurrent.futures import ThreadPoolExecutor

    def one(s: Sample):
        return preprocess_one(ImageInput.of(s, 0), pre, transform)

    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        out = list(pool.map(one, samples))
    problems = [Problem(str(s.path), err) for s, (x, err, _) in zip(samples, out) if x is None]
    idx = {c: i for i, c in enumerate(classes)}
    keep = [(x, idx[s.label]) for s, (x, _, _) in zip(samples, out) if x is not None]
    labels = torch.tensor([y for _, y in keep], dtype=torch.long)
    return [x for x, _ in keep], labels, problems


@dataclass
class PatchBank:
    images: list[torch.Tensor]  # uint8 (3, R, R) each
    labels: torch.Tensor  # class index per image
    problems: list[Problem]

    @classmethod
    def decode(
        cls,
        samples: Sequence[Sample],
        classes: Sequence[str],
        region: int,
        patch: int,
        transform: ImageTransform | None = None,
    ) -> "PatchBank":
        per_image = 3 * region * region
        if per_image * len(samples) > BANK_BYTES:  # keep memory bounded on large sets
            region = max(patch, int((BANK_BYTES / (3 * len(samples))) ** 0.5))
        return cls(*_decode_labelled(samples, classes, network_preprocessing(region, 1), transform))

    def __len__(self) -> int:
        return len(self.images)

    def epoch(
        self, seed: int, epoch: int, patch: int, per_image: int, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch: `per_image`·N patches (N images), classes drawn equally often, each patch
        at a random place with random flips. The same (seed, epoch) gives the same patches."""
        return _windows(self.images, self.labels, seed, epoch, patch, per_image, batch_size, True)


def _windows(images, labels, seed, epoch, size, per_image, batch_size, flips):
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    counts = torch.bincount(labels).float()
    weights = 1.0 / counts[labels]
    n = per_image * len(images)
    order = torch.multinomial(weights, n, replacement=True, generator=g)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        crops = []
        for i in idx.tolist():
            img = images[i]
            h, w = img.shape[1], img.shape[2]
            y0 = int(torch.randint(0, h - size + 1, (1,), generator=g))
            x0 = int(torch.randint(0, w - size + 1, (1,), generator=g))
            c = img[:, y0 : y0 + size, x0 : x0 + size]
            if flips:
                f = torch.rand(2, generator=g)
                c = c.flip(2) if f[0] < 0.5 else c
                c = c.flip(1) if f[1] < 0.5 else c
            crops.append(c)
        yield torch.stack(crops), labels[idx]


@dataclass
class ActivationBank:
    maps: list[torch.Tensor]  # float16 (C, R/s, R/s) each: the frozen stages' output
    labels: torch.Tensor
    problems: list[Problem]
    stride: int  # pixels per map cell

    @classmethod
    def from_pixels(cls, bank: PatchBank, net, device, batch: int = 16) -> "ActivationBank":
        pre = network_preprocessing(bank.images[0].shape[-1], 1)  # only its normalisation
        maps = []
        net.eval()
        with torch.inference_mode():
            for i in range(0, len(bank), batch):
                x = pre.normalize(torch.stack(bank.images[i : i + batch]).to(device))
                maps += list(net.trunk.frozen_maps(x).to("cpu", torch.float16))
        return cls(maps, bank.labels, bank.problems, net.trunk.stride)

    def __len__(self) -> int:
        return len(self.maps)

    def epoch(
        self, seed: int, epoch: int, patch: int, per_image: int, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Random windows of `patch` pixels (patch // stride cells) of the activation maps, as
        float32; no flips (a flipped map is not the map of a flipped picture)."""
        cells = max(1, patch // self.stride)
        for x, y in _windows(self.maps, self.labels, seed, epoch, cells, per_image, batch_size,
                             False):  # fmt: skip
            yield x.float(), y


@dataclass
class ViewBank:
    views: torch.Tensor  # uint8 (N, V, 3, P, P)
    labels: torch.Tensor
    problems: list[Problem]

    @classmethod
    def decode(
        cls,
        samples: Sequence[Sample],
        classes: Sequence[str],
        patch: int,
        views: int,
        transform: ImageTransform | None = None,
    ) -> "ViewBank":
        xs, labels, problems = _decode_labelled(
            samples, classes, network_preprocessing(patch, views), transform
        )
        if not xs:
            return cls(torch.zeros(0, views, 3, patch, patch, dtype=torch.uint8), labels, problems)
        return cls(torch.stack([x if x.dim() == 4 else x[None] for x in xs]), labels, problems)

    def __len__(self) -> int:
        return len(self.labels)
