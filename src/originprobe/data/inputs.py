"""One image to attribute, from whatever the caller holds: a path, encoded bytes, a `PIL.Image`
or a numpy array. It knows how to decode itself; nothing here runs a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .images import (
    DecodedImage,
    ImageDecodeError,
    decode_image,
    image_from_array,
    read_image,
    to_rgb,
)
from .samples import Sample

ImageTransform = Callable[[Any], Any]  # PIL image → PIL image (perturbations, studies)


@dataclass
class ImageInput:
    """One image to attribute: a file path, encoded bytes, a `PIL.Image` or a numpy array."""

    name: str
    source: Any

    @classmethod
    def of(cls, item: Any, index: int) -> "ImageInput":
        if isinstance(item, ImageInput):
            return item
        if isinstance(item, Sample):
            return cls(str(item.path), item.path)
        if isinstance(item, (str, Path)):
            return cls(str(item), Path(item))
        if isinstance(item, (bytes, bytearray, memoryview)):
            return cls(f"<bytes #{index}>", bytes(item))
        if isinstance(item, np.ndarray):
            return cls(f"<array #{index}>", item)
        from PIL import Image

        if isinstance(item, Image.Image):
            return cls(getattr(item, "filename", "") or f"<image #{index}>", item)
        raise TypeError(
            f"input #{index}: cannot read a {type(item).__name__} as an image "
            "(give a path, bytes, a PIL.Image or a numpy array)"
        )

    def decode(self, draft_size: int | None) -> DecodedImage:
        src = self.source
        if isinstance(src, Path):
            return read_image(src, draft_size)
        if isinstance(src, bytes):
            return decode_image(src, self.name, draft_size)
        if isinstance(src, np.ndarray):
            return DecodedImage(image_from_array(src, self.name))
        try:
            src.load()
            return DecodedImage(to_rgb(src))
        except (OSError, ValueError) as exc:
            raise ImageDecodeError(self.name, f"unreadable image ({exc})") from None
