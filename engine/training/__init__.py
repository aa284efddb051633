"""LoRA training of a user's face on the configured base model."""

from engine.training.checkpoint import latest_checkpoint
from engine.training.export import file_sha256
from engine.training.spec import (
    ProgressFn,
    SampleFn,
    StopFn,
    TrainingRequest,
    TrainingResult,
    TrainingStopped,
)
from engine.training.trainer import train

__all__ = [
    "ProgressFn",
    "SampleFn",
    "StopFn",
    "TrainingRequest",
    "TrainingResult",
    "TrainingStopped",
    "file_sha256",
    "latest_checkpoint",
    "train",
]
