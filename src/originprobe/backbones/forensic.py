"""`forensic`: low-level statistics of the pixels, as a backbone whose "layers" the same layer
selection can pick or fuse with a network's (`efficientnet-lite0+forensic`).

It reads an un-resampled 256-pixel centre crop (resampling would erase what it measures) with
values 0..255, and emits, per image:
- `residual` (21): per colour channel, statistics of the high-pass noise residual (a 3×3
  second-order filter): log std, mean |r| / std, kurtosis, share of |r| < 0.5 and < 2; the
  correlations of the residual between channels; the share of clipped pixels; the share of
  empty bins in the green histogram (gaps left by contrast stretching);
- `spectrum` (33): the azimuthal mean of the log power spectrum of the grey residual in 24 radial
  bins, and the log ratio of the power at the 1/2, 1/4 and 1/8 frequencies (where upsampling
  layers leave periodic peaks) to its neighbourhood;
- `autocorr` (16): the autocorrelation of the grey residual at lags 1..8, across and down.
No weights: its identity is its code version.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from .base import Backbone, BackboneSpec, Preprocessing
from .registry import register

VERSION = "forensic-1"
_BINS = 24
_SIZE = 256


class Forensic(Backbone):
    prefers_channels_last = False

    def __init__(self, size: int = _SIZE):
        super().__init__()
        self.name = "forensic"
        self.preprocessing = Preprocessing(
            input_size=size,
            resize_size=size,
            mean=(0.0, 0.0, 0.0),
            std=(1 / 255, 1 / 255, 1 / 255),
            crop="native",
        )
        self.weights_id = hashlib.sha256(VERSION.encode()).hexdigest()
        k = torch.tensor([[-1.0, 2.0, -1.0], [2.0, -4.0, 2.0], [-1.0, 2.0, -1.0]]) / 4.0
        self.register_buffer("kernel", k.expand(3, 1, 3, 3).clone(), persistent=False)
        self.layer_names = ["residual", "spectrum", "autocorr"]
        self.feature_dims = {"residual": 21, "spectrum": _BINS + 9, "autocorr": 16}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.float()  # (B, 3, S, S), 0..255
        res = F.conv2d(x, self.kernel, groups=3)  # (B, 3, S-2, S-2)
        return {
            "residual": self._residual(x, res),
            "spectrum": self._spectrum(res.mean(1)),
            "autocorr": self._autocorr(res.mean(1)),
        }

    @staticmethod
    def _residual(x: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        r = res.flatten(2)  # (B, 3, N)
        mu = r.mean(-1, keepdim=True)
        sd = r.std(-1) + 1e-6
        z = (r - mu) / sd[..., None]
        stats = [
            sd.log(),
            r.abs().mean(-1) / sd,
            (z**4).mean(-1),
            (r.abs() < 0.5).float().mean(-1),
            (r.abs() < 2).float().mean(-1),
        ]
        per_channel = torch.stack(stats, -1).flatten(1)  # (B, 15)
        cc = torch.stack(
            [
                (z[:, 0] * z[:, 1]).mean(-1),
                (z[:, 1] * z[:, 2]).mean(-1),
                (z[:, 0] * z[:, 2]).mean(-1),
            ],
            -1,
        )
        flat = x.flatten(1)
        clip = torch.stack([(flat <= 0).float().mean(-1), (flat >= 255).float().mean(-1)], -1)
        green = x[:, 1].round().clamp(0, 255).long().flatten(1)
        hist = torch.zeros(len(x), 256, device=x.device).scatter_add_(
            1, green, torch.ones_like(green, dtype=torch.float32)
        )
        gaps = (hist[:, 1:-1] == 0).float().mean(-1, keepdim=True)
        return torch.cat([per_channel, cc, clip, gaps], 1)

    @staticmethod
    def _spectrum(g: torch.Tensor) -> torch.Tensor:
        g = g - g.mean((1, 2), keepdim=True)
        n, w = g.shape[1], g.shape[2]
        p = torch.fft.rfft2(g).abs() ** 2
        p = p / (p.sum((1, 2), keepdim=True) + 1e-12)
        fy = torch.fft.fftfreq(n, device=g.device)[:, None]
        fx = torch.fft.rfftfreq(w, device=g.device)[None, :]
        idx = ((fx**2 + fy**2).sqrt() / 0.5 * _BINS).long().clamp(max=_BINS - 1).flatten()
        flat = p.flatten(1)
        sums = torch.zeros(len(g), _BINS, device=g.device).index_add_(1, idx, flat)
        counts = torch.bincount(idx, minlength=_BINS).clamp(min=1).float()
        radial = (sums / counts + 1e-12).log()
        peaks = []
        for frac in (2, 4, 8):
            k = n // frac
            for yy, xx in ((0, k), (k, 0), (k, k)):
                xx = min(xx, p.shape[2] - 1)
                nb = (
                    p[:, max(0, yy - 2) : yy + 3, max(0, xx - 2) : xx + 3]
                    .flatten(1)
                    .median(1)
                    .values
                )
                peaks.append(((p[:, yy, xx] + 1e-12) / (nb + 1e-12)).log())
        return torch.cat([radial, torch.stack(peaks, 1)], 1)

    @staticmethod
    def _autocorr(g: torch.Tensor) -> torch.Tensor:
        g = g - g.mean((1, 2), keepdim=True)
        var = (g * g).mean((1, 2)) + 1e-12
        out = []
        for lag in range(1, 9):
            out.append((g[:, :, lag:] * g[:, :, :-lag]).mean((1, 2)) / var)
            out.append((g[:, lag:, :] * g[:, :-lag, :]).mean((1, 2)) / var)
        return torch.stack(out, 1)


register(
    BackboneSpec(
        name="forensic",
        source="builtin",
        description="pixel statistics: noise residual, spectrum, autocorrelation (256 px native crop)",
        builder=lambda weights=None, **_: Forensic(),
        weights_hint="none needed",
        weights_available=lambda: True,
        layers_hint="residual, spectrum, autocorr",
        dim_hint="21, 33, 16",
    )
)
