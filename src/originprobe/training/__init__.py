"""Stage: networks originprobe trains itself on the known classes' training images, to be used as
backbones (`learned:ARCH`). Only known-class training images ever reach it."""

from .loop import TrainConfig, TrainResult, TrainRun, train_network
from .losses import LOSSES, TrainingLoss

__all__ = ["LOSSES", "TrainConfig", "TrainResult", "TrainRun", "TrainingLoss", "train_network"]
