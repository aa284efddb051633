"""What a training run is asked to do, what it reports while running, and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from engine.models.recipe import TrainingRecipe
from engine.training.likeness import LikenessScore

__all__ = [
    "ProgressFn",
    "SampleFn",
    "StopFn",
    "TrainingRequest",
    "TrainingResult",
    "TrainingStopped",
    "ValidateFn",
]

# (step just finished, total steps, its loss, estimated seconds left)
ProgressFn = Callable[[int, int, float, float], None]
# (step just finished, a preview image of the trigger at that step)
SampleFn = Callable[[int, Image.Image], None]
# Asked between steps; True stops the run (cancel, or yield the GPU to other jobs).
StopFn = Callable[[], bool]
# (step just finished) -> how much the model at that step looks like the user.
ValidateFn = Callable[[int], LikenessScore]


@dataclass(frozen=True, slots=True)
class TrainingRequest:
    # Square face crops at the family's resolution (intake's PhotoAnalysis.crop).
    images: tuple[Image.Image, ...]
    # The user's made-up trigger word, six letters such as "vawigo" (bot.core.requests makes
    # them); captions read "a photo of <trigger> <class_word>".
    trigger: str
    # Where the finished LoRA file (diffusers format, safetensors) is written.
    output: Path
    class_word: str = "person"
    # Seeds the LoRA initialisation, the noise, timesteps, flips and caption choice.
    seed: int = 0
    # The family's default recipe when None.
    recipe: TrainingRecipe | None = None
    # Overrides recipe.total_steps(len(images)) when set.
    steps: int | None = None
    # A resumable checkpoint every this many steps (0: only when stopped).
    checkpoint_every: int = 0
    # A preview sample every this many steps (0: none).
    sample_every: int = 0
    # Prior preservation: images of the class ("a photo of a person") made by the base
    # model itself; each step also learns to keep drawing them, so the LoRA does not
    # turn every person into the user. Empty: off.
    class_images: tuple[Image.Image, ...] = ()
    prior_loss_weight: float = 1.0
    # engine.training.embedding.METHODS: "lora", "textual_inversion" (the trigger's
    # embedding only) or "pivotal" (both).
    method: str = "lora"
    # The likeness is measured this many times, evenly spread, the last at the end; the
    # best-scoring step's weights are the ones kept (0: not measured; the last step's).
    validations: int = 0


@dataclass(frozen=True, slots=True)
class TrainingResult:
    path: Path
    sha256: str  # of the LoRA file
    steps: int  # steps done in total, across resumes
    loss: float  # mean loss of the last few steps
    recipe: TrainingRecipe
    # The likeness of the weights kept, and the step they are from (with validations).
    likeness: LikenessScore | None = None
    likeness_step: int = 0


class TrainingStopped(Exception):
    """`should_stop` said stop; `checkpoint` (if any) resumes the run at `step`."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"training stopped after step {step}")
        self.step = step
        self.checkpoint = checkpoint
