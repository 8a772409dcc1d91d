"""Stage 1: images on disk → labelled, hashed samples and checked open-set splits."""
from .images import ImageDecodeError, decode_image, load_image
from .samples import (Dataset, DatasetError, Problem, Sample, hash_samples, load_dataset)
from .splits import OpenSetSplit, SplitLeakError, make_split

__all__ = [
    "Dataset", "DatasetError", "ImageDecodeError", "OpenSetSplit", "Problem", "Sample",
    "SplitLeakError", "decode_image", "hash_samples", "load_dataset", "load_image", "make_split",
]
