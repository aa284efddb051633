"""A LoRA training recipe: the handful of numbers that decide how a user's LoRA is trained."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["TrainingRecipe"]


@dataclass(frozen=True, slots=True)
class TrainingRecipe:
    rank: int  # LoRA rank r
    alpha: int  # LoRA alpha; the update is scaled by alpha / rank
    learning_rate: float  # AdamW, constant schedule
    steps_per_photo: int  # optimiser steps per accepted photo...
    min_steps: int  # ...but at least this many...
    max_steps: int  # ...and at most this many
    batch_size: int

    def __post_init__(self) -> None:
        for name in ("rank", "alpha", "steps_per_photo", "min_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"recipe {name} must be at least 1, got {getattr(self, name)!r}")
        if self.max_steps < self.min_steps:
            raise ValueError(
                f"recipe max_steps ({self.max_steps}) is below min_steps ({self.min_steps})"
            )
        if not 0.0 < self.learning_rate < 1.0:
            raise ValueError(f"recipe learning_rate must be in (0, 1), got {self.learning_rate!r}")

    def total_steps(self, photos: int) -> int:
        """Optimiser steps for a training set of `photos` images."""
        return min(max(photos * self.steps_per_photo, self.min_steps), self.max_steps)

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int | float]) -> TrainingRecipe:
        return cls(
            rank=int(data["rank"]),
            alpha=int(data["alpha"]),
            learning_rate=float(data["learning_rate"]),
            steps_per_photo=int(data["steps_per_photo"]),
            min_steps=int(data["min_steps"]),
            max_steps=int(data["max_steps"]),
            batch_size=int(data["batch_size"]),
        )
