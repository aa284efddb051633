"""The job contract: what each kind of job asks for and what it gives back.

Each job kind has a frozen request type and a frozen result type with one versioned JSON
form. The core builds requests, the job row stores them, the dispatcher sends them to the
engine worker and stores what comes back; all of them use these types, and this is the
only module that reads job JSON. Torch-free: the command line and both chats import it.

Validation lives in the request types (`check()`), with errors that quote the value and
say what is allowed; the chats and the command line read their option ranges from the
`Bound`s below.

Adding a job kind: a request type and a result type here (in `_REQUESTS` / `_RESULTS`),
a handler in `engine.worker`, and one way to show its result (`bot.core.outcomes`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from engine.limits import ASPECT_RATIOS, MAX_GUIDANCE, MAX_IMAGES, MAX_PROMPT_CHARS, MAX_STEPS

__all__ = [
    "ATTACHMENTS",
    "COUNT",
    "DESCRIPTOR_SIZE",
    "EDIT_STRENGTH",
    "FORMAT",
    "GUIDANCE",
    "MAX_STYLES",
    "SAME_PERSON",
    "SEED",
    "STEPS",
    "STRENGTH",
    "STYLE_NAME",
    "STYLE_WEIGHT",
    "TOOLS",
    "TRAINING_METHODS",
    "UPSCALE",
    "UPSCALE_STRENGTH",
    "Bound",
    "ImagineRequest",
    "ImagineResult",
    "JobFormatError",
    "JobRequest",
    "JobResult",
    "ModelRef",
    "Prior",
    "RequestError",
    "StyleRef",
    "TrainRequest",
    "TrainResult",
    "Variation",
    "decode_request",
    "decode_result",
    "encode",
    "likeness_words",
    "nearest_aspect",
    "tool_of",
]

# The version of the JSON form written now. Rows without a version were written before
# versions existed (format 0); they are still read, so jobs queued then still run.
# 2: imagine requests gained styles, source and strength. An older version would run a
# format-2 row without its styles or its source, so it refuses the row instead.
# 3: imagine requests gained mask (inpainting), edges (edge control) and upscale.
# 4: train requests gained likeness (the reference it is measured against), and train
# results the likeness measured.
# 5: train requests gained method (lora, textual_inversion or pivotal).
FORMAT = 5
# How a training learns the face (engine.training.embedding.METHODS).
TRAINING_METHODS = ("lora", "textual_inversion", "pivotal")
# A face descriptor (dlib): the likeness reference of a training.
DESCRIPTOR_SIZE = 128
# dlib's threshold for "the same person" (its face recognition model's documentation):
# two photos of one person are typically closer, two people further apart.
SAME_PERSON = 0.6

N = TypeVar("N", int, float)


class RequestError(ValueError):
    """A request value outside what is allowed; the message quotes it and says what is."""


class JobFormatError(ValueError):
    """Stored job data that this version cannot read; the message says why."""


@dataclass(frozen=True, slots=True)
class Bound(Generic[N]):
    """An option's allowed range and default: one source for the core's check, the
    command line's help, the Telegram parser and the Discord option ranges."""

    name: str
    low: N
    high: N
    default: N

    def check(self, value: N) -> None:
        if not self.low <= value <= self.high:
            raise RequestError(f"{self.name} must be {self.range}, got {value!r}")

    @property
    def range(self) -> str:
        """ "1 to 100", "0 to 20": as help texts and errors write it."""
        return (
            f"{self.low:g} to {self.high:g}"
            if isinstance(self.low, float)
            else (f"{self.low} to {self.high}")
        )


STEPS = Bound("steps", 1, MAX_STEPS, 30)
COUNT = Bound("count", 1, MAX_IMAGES, 1)
GUIDANCE = Bound("guidance", 0.0, MAX_GUIDANCE, 7.0)
# Image i of a generation uses seed + i, so the last seeds are kept free for that.
SEED = Bound("seed", 0, 2**32 - MAX_IMAGES - 1, 0)
DEFAULT_ASPECT = "1:1"
# How much of a style LoRA is mixed in (its adapter weight): 0 is none of it; above 1
# exaggerates it, and past 2 most LoRAs only add artefacts.
STYLE_WEIGHT = Bound("style weight", 0.0, 2.0, 1.0)
MAX_STYLES = 2
# A style's name as users type it (`--style ikea:0.7`): lower case, digits, - and _.
STYLE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_STYLE_TRIGGER_CHARS = 200
# Image-to-image: how far the source picture is noised before it is denoised again
# (diffusers' `strength`). Below 0.1 hardly anything changes; at 1 the source is gone.
STRENGTH = Bound("strength", 0.1, 0.95, 0.6)
# Inpainting redraws the masked part from scratch unless told otherwise.
EDIT_STRENGTH = 0.95
# Upscale: the picture enlarged this many times, then redrawn lightly at UPSCALE_STRENGTH
# with the same model, prompt and seed (a "hires fix": no upscaler model needed).
UPSCALE = 2
UPSCALE_STRENGTH = 0.3
# The request fields that name a picture the user attached (blob keys): screened by the
# core, kept while the job needs them, erased with the user.
ATTACHMENTS = ("source", "mask", "edges")
# The tools a picture job can be, by what its request holds.
TOOLS = ("imagine", "img2img", "edit", "edges", "upscale")


def nearest_aspect(width: int, height: int) -> str:
    """The offered aspect ratio closest to a picture's (a source is cropped to it)."""
    if width < 1 or height < 1:
        raise RequestError(f"a picture of {width}x{height} pixels has no aspect ratio")
    wanted = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda name: abs(math.log(_ratio(name)) - wanted))


def _ratio(name: str) -> float:
    w, h = ASPECT_RATIOS[name]
    return w / h


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The user's trained model a generation uses: its file in the blob store."""

    blob: str
    sha256: str
    trigger: str
    version: int


@dataclass(frozen=True, slots=True)
class Variation:
    """Pictures close to the one made with `seed`: its starting noise blended with new
    noise, `strength` of the way (0: the same picture, 1: unrelated)."""

    seed: int
    strength: float


@dataclass(frozen=True, slots=True)
class StyleRef:
    """A style LoRA from the admins' library, mixed in at `weight`; `trigger` holds the
    words its trainer used (put in front of the prompt), empty when it needs none."""

    name: str
    blob: str
    sha256: str
    weight: float = STYLE_WEIGHT.default
    trigger: str = ""

    def check(self) -> None:
        if not STYLE_NAME.fullmatch(self.name):
            raise RequestError(
                f"style name {self.name!r} is not allowed: 1 to 32 lower-case letters, "
                "digits, - or _, starting with a letter or digit"
            )
        if not 0.0 <= self.weight <= STYLE_WEIGHT.high:
            raise RequestError(
                f"the weight of style {self.name!r} must be {STYLE_WEIGHT.range}, "
                f"got {self.weight!r}"
            )
        if len(self.trigger) > MAX_STYLE_TRIGGER_CHARS or not self.trigger.isprintable():
            raise RequestError(
                f"the trigger words of style {self.name!r} must be one line of at most "
                f"{MAX_STYLE_TRIGGER_CHARS} printable characters, got {self.trigger[:60]!r}"
            )


@dataclass(frozen=True, slots=True)
class ImagineRequest:
    """A generation as the user asked for it, in their own words (no trigger word)."""

    kind: ClassVar[str] = "imagine"

    prompt: str
    negative: str = ""
    seed: int | None = None  # None: random, reported with the pictures
    steps: int = STEPS.default
    guidance: float = GUIDANCE.default
    aspect_ratio: str = DEFAULT_ASPECT
    count: int = COUNT.default
    variation: Variation | None = None
    model: ModelRef | None = None  # put in by the core: the user's active model
    # Style LoRAs mixed with the user's, in the order asked (at most MAX_STYLES).
    styles: tuple[StyleRef, ...] = ()
    # Image-to-image: the blob key of a picture the core has already screened (safe
    # decode, metadata stripped, image filter, likeness); None is text-to-image.
    source: str | None = None
    strength: float = STRENGTH.default  # read only with a source
    # Inpainting: the blob key of a mask for the source (white: repaint, black: keep).
    mask: str | None = None
    # Edge control: the blob key of a screened picture whose canny edges the new picture
    # follows (through the family's ControlNet); text-to-image only.
    edges: str | None = None
    # Upscale: the source (one of the user's results) made `upscale` times larger.
    upscale: int = 1

    @property
    def tool(self) -> str:
        """Which of TOOLS this request is."""
        return tool_of(self.source, self.mask, self.edges, self.upscale)

    @property
    def attachments(self) -> tuple[str, ...]:
        """The blob keys of the pictures this request reads (see ATTACHMENTS)."""
        return tuple(key for key in (self.source, self.mask, self.edges) if key is not None)

    def batch_key(self) -> tuple[object, ...] | None:
        """Requests with equal keys can share one denoising batch; None: this one runs
        alone. The same rule as engine.generation.together.batch_key, which the engine
        applies again to what it is sent."""
        if self.styles or self.source is not None or self.edges is not None or self.variation:
            return None
        return (self.steps, self.guidance, self.aspect_ratio, self.negative)

    def check(self) -> None:
        """Raise RequestError for the first value that is not allowed."""
        if not self.prompt.strip():
            raise RequestError("the prompt is empty: say what to imagine")
        for name, text in (("prompt", self.prompt), ("negative prompt", self.negative)):
            if len(text) > MAX_PROMPT_CHARS:
                raise RequestError(
                    f"the {name} has {len(text)} characters, at most {MAX_PROMPT_CHARS}"
                )
        if self.aspect_ratio not in ASPECT_RATIOS:
            raise RequestError(
                f"aspect ratio {self.aspect_ratio!r} is not offered; "
                f"one of {', '.join(ASPECT_RATIOS)}"
            )
        COUNT.check(self.count)
        STEPS.check(self.steps)
        GUIDANCE.check(self.guidance)
        if self.seed is not None:
            SEED.check(self.seed)
        if self.variation is not None:
            if not 0 <= self.variation.seed < 2**32:
                raise RequestError(
                    f"variation seed must be 0 to {2**32 - 1}, got {self.variation.seed!r}"
                )
            if not 0.0 <= self.variation.strength <= 1.0:
                raise RequestError(
                    f"variation strength must be 0 to 1, got {self.variation.strength!r}"
                )
        if self.model is not None and not self.model.trigger.isalnum():
            raise RequestError(f"trigger must be one alphanumeric word, got {self.model.trigger!r}")
        if len(self.styles) > MAX_STYLES:
            names = ", ".join(style.name for style in self.styles)
            raise RequestError(
                f"at most {MAX_STYLES} styles can be mixed, got {len(self.styles)} ({names})"
            )
        for n, style in enumerate(self.styles):
            style.check()
            if any(style.name == other.name for other in self.styles[:n]):
                raise RequestError(f"style {style.name!r} is asked for twice: name it once")
        STRENGTH.check(self.strength)
        if self.source is not None and self.variation is not None:
            raise RequestError(
                "variations are of text-to-image pictures; for another take on a "
                "picture made from a photo, reroll it (a new seed)"
            )
        for name in ATTACHMENTS:
            if getattr(self, name) == "":
                raise RequestError(f"the {name} picture's key is empty")
        if self.mask is not None and self.source is None:
            raise RequestError("a mask needs the picture it masks: attach one to edit")
        if self.edges is not None and (self.source is not None or self.variation is not None):
            raise RequestError(
                "edge control starts from noise: it cannot be mixed with a picture to "
                "redraw or with variations"
            )
        if self.upscale not in (1, UPSCALE):
            raise RequestError(f"upscale must be 1 (none) or {UPSCALE}, got {self.upscale!r}")
        if self.upscale > 1 and (self.source is None or self.mask is not None):
            raise RequestError("an upscale needs the picture to enlarge, and no mask")
        if self.upscale > 1 and self.count != 1:
            raise RequestError(f"an upscale makes one picture, not {self.count}")
        # diffusers denoises int(steps * strength) of the steps; none would be an error.
        if self.source is not None and int(self.steps * self.strength) < 1:
            least = math.ceil(1 / self.strength)
            raise RequestError(
                f"with strength {self.strength:g}, steps must be at least {least} "
                f"(got {self.steps}): nothing would be redrawn"
            )


@dataclass(frozen=True, slots=True)
class ImagineResult:
    """What a generation left: the pictures handed to the owner (blob keys, in order)."""

    kind: ClassVar[str] = "imagine"

    images: tuple[str, ...]
    withheld: int = 0  # pictures the safety filters kept back
    # The prompt as the model read it, trigger word included: for the record, never shown.
    model_prompt: str = ""


@dataclass(frozen=True, slots=True)
class Prior:
    """Prior preservation: `class_images` pictures of the class, learned at `weight`."""

    class_images: int
    weight: float


@dataclass(frozen=True, slots=True)
class TrainRequest:
    """A training of the user's model on their accepted face crops (blob keys)."""

    kind: ClassVar[str] = "train"

    crops: tuple[str, ...]
    trigger: str
    base_model: str
    seed: int
    sample_every: int
    checkpoint_every: int
    steps: int | None = None  # None: the recipe's count for this many photos
    recipe: Mapping[str, int | float] | None = None  # None: the family's own
    prior: Prior | None = None
    # The mean face descriptor of the user's accepted photos: the model's likeness is
    # measured against it, and the checkpoint most like them kept. None: not measured.
    likeness: tuple[float, ...] | None = None
    method: str = "lora"

    def check(self) -> None:
        if not self.crops:
            raise RequestError("a training needs at least one photo")
        if self.method not in TRAINING_METHODS:
            raise RequestError(
                f"method must be one of {', '.join(TRAINING_METHODS)}, got {self.method!r}"
            )
        if self.likeness is not None and (
            len(self.likeness) != DESCRIPTOR_SIZE or not all(map(math.isfinite, self.likeness))
        ):
            raise RequestError(
                f"a likeness reference is {DESCRIPTOR_SIZE} finite numbers, "
                f"got {len(self.likeness)}"
            )
        if not self.trigger.isalnum():
            raise RequestError(f"trigger must be one alphanumeric word, got {self.trigger!r}")
        if self.steps is not None and self.steps < 1:
            raise RequestError(f"steps must be at least 1, got {self.steps!r}")
        for name in ("sample_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise RequestError(f"{name} must be 0 or more, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class TrainResult:
    """The model a training made: its row, its version, and how the run went."""

    kind: ClassVar[str] = "train"

    lora_id: int
    version: int
    steps: int
    loss: float
    # How much the model kept looks like its user (engine.training.likeness), from the
    # validation pictures of `likeness_step`; distance None: no face in them.
    likeness: float | None = None
    likeness_faces: int = 0
    likeness_samples: int = 0  # 0: not measured
    likeness_step: int = 0


def tool_of(source: object, mask: object, edges: object, upscale: int) -> str:
    """Which of TOOLS a picture job is, by the pictures it reads (None: absent)."""
    if upscale > 1:
        return "upscale"
    if mask is not None:
        return "edit"
    if edges is not None:
        return "edges"
    return "img2img" if source is not None else "imagine"


def likeness_words(distance: float | None, faces: int, samples: int) -> str:
    """A model's likeness as users read it (TrainResult.likeness and its counts)."""
    if distance is None:
        return f"no face found in the {samples} validation samples, so there is no likeness score"
    verdict = "the same person" if distance < SAME_PERSON else "not like you yet"
    return (
        f"likeness {distance:.2f}, {verdict} (below {SAME_PERSON:.2f} means the same person "
        f"to the face model; {faces} of {samples} samples show a face)"
    )


JobRequest = ImagineRequest | TrainRequest
JobResult = ImagineResult | TrainResult
KINDS = ("imagine", "train")


# the JSON form ------------------------------------------------------------------------


def encode(value: JobRequest | JobResult) -> str:
    """The versioned JSON form of a request or a result."""
    body: dict[str, Any] = {"v": FORMAT, "kind": value.kind}
    if isinstance(value, ImagineRequest):
        body |= {
            "prompt": value.prompt,
            "negative": value.negative,
            "seed": value.seed,
            "steps": value.steps,
            "guidance": value.guidance,
            "aspect_ratio": value.aspect_ratio,
            "count": value.count,
            "variation": _plain(value.variation),
            "model": _plain(value.model),
            "styles": [_plain(style) for style in value.styles],
            "source": value.source,
            "strength": value.strength,
            "mask": value.mask,
            "edges": value.edges,
            "upscale": value.upscale,
        }
    elif isinstance(value, TrainRequest):
        body |= {
            "crops": list(value.crops),
            "trigger": value.trigger,
            "base_model": value.base_model,
            "seed": value.seed,
            "sample_every": value.sample_every,
            "checkpoint_every": value.checkpoint_every,
            "steps": value.steps,
            "recipe": dict(value.recipe) if value.recipe is not None else None,
            "prior": _plain(value.prior),
            "likeness": list(value.likeness) if value.likeness is not None else None,
            "method": value.method,
        }
    elif isinstance(value, ImagineResult):
        body |= {
            "images": list(value.images),
            "withheld": value.withheld,
            "model_prompt": value.model_prompt,
        }
    else:
        body |= {
            "lora_id": value.lora_id,
            "version": value.version,
            "steps": value.steps,
            "loss": value.loss,
            "likeness": value.likeness,
            "likeness_faces": value.likeness_faces,
            "likeness_samples": value.likeness_samples,
            "likeness_step": value.likeness_step,
        }
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def decode_request(kind: str, text: str) -> JobRequest:
    """A stored or sent request of job kind `kind`; JobFormatError says why it cannot be."""
    data = _load(kind, text)
    legacy = "v" not in data
    read = _Reader(data, f"{kind} request")
    if kind == "imagine":
        model = read.optional("lora" if legacy else "model", dict)
        if model is not None and legacy:
            model = model | {"version": read.get("lora_version", int)}
        variation = read.optional("variation", dict)
        # Formats 0 and 1 had neither styles nor image-to-image.
        styles = read.optional("styles", list) or []
        if not all(isinstance(style, dict) for style in styles):
            raise JobFormatError(f"the {kind} request's 'styles' should list objects")
        return ImagineRequest(
            prompt=read.get("prompt", str),
            negative=read.get("negative_prompt" if legacy else "negative", str),
            seed=read.optional("seed", int),
            steps=read.get("steps", int),
            guidance=read.number("guidance"),
            aspect_ratio=read.get("aspect_ratio", str),
            count=read.get("count", int),
            variation=_Reader(variation, "variation").build(Variation) if variation else None,
            model=_Reader(model, "model").build(ModelRef) if model else None,
            styles=tuple(_Reader(style, "style").build(StyleRef) for style in styles),
            source=read.optional("source", str),
            strength=read.number("strength") if "strength" in data else STRENGTH.default,
            # Formats 0 to 2 had no inpainting, edge control or upscale.
            mask=read.optional("mask", str),
            edges=read.optional("edges", str),
            upscale=read.get("upscale", int) if "upscale" in data else 1,
        )
    prior = read.optional("prior", dict)
    recipe = read.optional("recipe", dict)
    return TrainRequest(
        crops=tuple(read.strings("crops")),
        trigger=read.get("trigger", str),
        base_model=read.get("base_model", str),
        seed=read.get("seed", int),
        sample_every=read.get("sample_every", int),
        checkpoint_every=read.get("checkpoint_every", int),
        steps=read.optional("steps", int),
        recipe={str(k): v for k, v in recipe.items()} if recipe is not None else None,
        prior=_Reader(prior, "prior").build(Prior) if prior else None,
        likeness=tuple(read.numbers("likeness")) if data.get("likeness") is not None else None,
        # Formats 0 to 4 trained LoRAs only.
        method=read.get("method", str) if "method" in data else "lora",
    )


def decode_result(kind: str, text: str) -> JobResult:
    """A stored result of job kind `kind`; JobFormatError says why it cannot be read."""
    data = _load(kind, text)
    read = _Reader(data, f"{kind} result")
    if kind == "imagine":
        legacy = "v" not in data
        return ImagineResult(
            images=tuple(read.strings("images")),
            withheld=read.get("withheld", int) if "withheld" in data else 0,
            model_prompt=read.get("prompt" if legacy else "model_prompt", str),
        )
    measured = data.get("likeness_samples", 0)  # formats 0 to 3 measured nothing
    return TrainResult(
        lora_id=read.get("lora_id", int),
        version=read.get("version", int),
        steps=read.get("steps", int),
        loss=read.number("loss"),
        likeness=read.number("likeness") if data.get("likeness") is not None else None,
        likeness_faces=read.get("likeness_faces", int) if measured else 0,
        likeness_samples=read.get("likeness_samples", int) if measured else 0,
        likeness_step=read.get("likeness_step", int) if measured else 0,
    )


def _load(kind: str, text: str) -> dict[str, Any]:
    if kind not in KINDS:
        raise JobFormatError(f"unknown job kind {kind!r}: this version runs {', '.join(KINDS)}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise JobFormatError(f"the {kind} job's data is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise JobFormatError(f"the {kind} job's data is not a JSON object: {text[:60]!r}")
    version = data.get("v", 0)
    if type(version) is not int or not 0 <= version <= FORMAT:
        raise JobFormatError(
            f"the {kind} job was written in format {version!r}, by another version of "
            f"selfiebooth; this one reads formats 0 to {FORMAT}"
        )
    if version and data.get("kind") != kind:
        raise JobFormatError(f"the job is a {kind} job but its data says {data.get('kind')!r}")
    return data


T = TypeVar("T")


class _Reader:
    """Typed reads from a decoded JSON object; a missing or mistyped field is a
    JobFormatError naming the field."""

    def __init__(self, data: Mapping[str, Any], what: str) -> None:
        self.data = data
        self.what = what

    def get(self, key: str, kind: type[T]) -> T:
        if key not in self.data:
            raise JobFormatError(f"the {self.what} has no {key!r}")
        value = self.data[key]
        # JSON has no separate bool: true is not a number here.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise JobFormatError(
                f"the {self.what}'s {key!r} should be {kind.__name__}, got {value!r}"
            )
        return value

    def optional(self, key: str, kind: type[T]) -> T | None:
        return None if self.data.get(key) is None else self.get(key, kind)

    def number(self, key: str) -> float:
        value = self.data.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise JobFormatError(f"the {self.what}'s {key!r} should be a number, got {value!r}")
        return float(value)

    def numbers(self, key: str) -> list[float]:
        values = self.get(key, list)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise JobFormatError(f"the {self.what}'s {key!r} should list numbers")
        return [float(v) for v in values]

    def strings(self, key: str) -> list[str]:
        values = self.get(key, list)
        if not all(isinstance(v, str) for v in values):
            raise JobFormatError(f"the {self.what}'s {key!r} should list strings")
        return values

    def build(self, cls: type[T]) -> T:
        """A small nested value (ModelRef, Variation, Prior, StyleRef) from its fields."""
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        values = {}
        for name, field in fields.items():
            kind = {"int": int, "str": str, "float": float}[str(field.type)]
            values[name] = self.number(name) if kind is float else self.get(name, kind)
        return cls(**values)


def _plain(value: ModelRef | Variation | Prior | StyleRef | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {name: getattr(value, name) for name in value.__dataclass_fields__}
