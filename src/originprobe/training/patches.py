"""Training images held decoded, and the native-resolution patches cut from them.

`PatchBank` decodes every image once (in threads, with the run's perturbation, e.g. JPEG
alignment) and keeps an un-resampled uint8 region of it; an epoch is a seeded, class-balanced draw
of random patches with random flips from those regions. `ViewBank` keeps the fixed grid of views a
trained network reads at inference, for validation. Nothing here is ever resampled.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ..backbones.base import Preprocessing
from ..backbones.learned import MEAN, STD, network_preprocessing
from ..data import Problem, Sample
from ..data.inputs import ImageInput, ImageTransform
from ..features.forward import default_workers, preprocess_one

#: decoded training pixels kept in memory at most; larger sets keep smaller regions per image
BANK_BYTES = 3 * 2**30


def _decode_all(
    samples: Sequence[Sample], pre: Preprocessing, transform: ImageTransform | None
) -> tuple[list[torch.Tensor | None], list[Problem]]:
    from concurrent.futures import ThreadPoolExecutor

    def one(s: Sample):
        return preprocess_one(ImageInput.of(s, 0), pre, transform)

    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        out = list(pool.map(one, samples))
    problems = [Problem(str(s.path), err) for s, (x, err, _) in zip(samples, out) if x is None]
    return [x for x, _, _ in out], problems


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
        pre = Preprocessing(region, region, mean=MEAN, std=STD, crop="native")
        xs, problems = _decode_all(samples, pre, transform)
        idx = {c: i for i, c in enumerate(classes)}
        keep = [(x, idx[s.label]) for s, x in zip(samples, xs) if x is not None]
        return cls(
            [x for x, _ in keep], torch.tensor([y for _, y in keep], dtype=torch.long), problems
        )

    def __len__(self) -> int:
        return len(self.images)

    def epoch(
        self, seed: int, epoch: int, patch: int, per_image: int, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch: `per_image`·N patches (N images), classes drawn equally often, each patch
        at a random place with random flips. The same (seed, epoch) gives the same patches."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        counts = torch.bincount(self.labels).float()
        weights = 1.0 / counts[self.labels]
        n = per_image * len(self)
        order = torch.multinomial(weights, n, replacement=True, generator=g)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            crops = []
            for i in idx.tolist():
                img = self.images[i]
                h, w = img.shape[1], img.shape[2]
                y0 = int(torch.randint(0, h - patch + 1, (1,), generator=g))
                x0 = int(torch.randint(0, w - patch + 1, (1,), generator=g))
                c = img[:, y0 : y0 + patch, x0 : x0 + patch]
                flips = torch.rand(2, generator=g)
                if flips[0] < 0.5:
                    c = c.flip(2)
                if flips[1] < 0.5:
                    c = c.flip(1)
                crops.append(c)
            yield torch.stack(crops), self.labels[idx]


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
        pre = network_preprocessing(patch, views)
        xs, problems = _decode_all(samples, pre, transform)
        idx = {c: i for i, c in enumerate(classes)}
        keep = [(x if x.dim() == 4 else x[None], idx[s.label]) for s, x in zip(samples, xs)
                if x is not None]  # fmt: skip
        if not keep:
            return cls(torch.zeros(0, views, 3, patch, patch, dtype=torch.uint8),
                       torch.zeros(0, dtype=torch.long), problems)  # fmt: skip
        return cls(
            torch.stack([x for x, _ in keep]),
            torch.tensor([y for _, y in keep], dtype=torch.long),
            problems,
        )

    def __len__(self) -> int:
        return len(self.labels)
