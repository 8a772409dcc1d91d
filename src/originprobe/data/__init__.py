"""Stage 1: images on disk → labelled, hashed samples and checked open-set splits."""

from .images import (
    DecodedImage,
    ImageDecodeError,
    decode_image,
    load_image,
    max_pixels,
    read_image,
    set_max_pixels,
)
from .samples import Dataset, DatasetError, Problem, Sample, hash_samples, load_dataset
from .splits import OpenSetSplit, SplitLeakError, SplitWarning, make_split

__all__ = [
    "Dataset",
    "DatasetError",
    "DecodedImage",
    "ImageDecodeError",
    "OpenSetSplit",
    "Problem",
    "Sample",
    "SplitLeakError",
    "SplitWarning",
    "decode_image",
    "hash_samples",
    "load_dataset",
    "load_image",
    "make_split",
    "max_pixels",
    "read_image",
    "set_max_pixels",
]
