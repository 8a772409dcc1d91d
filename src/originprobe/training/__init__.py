"""Stage: networks originprobe trains itself on the known classes' training split, to be used as
backbones (`learned:ARCH`). Only train and validation images ever reach it."""

from .loop import LOSSES, TrainConfig, TrainResult, train_network

__all__ = ["LOSSES", "TrainConfig", "TrainResult", "train_network"]
