"""The job contract (engine.jobs): JSON forms, versions, and validation in one place."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from engine import jobs
from engine.jobs import (
    ImagineRequest,
    ImagineResult,
    JobFormatError,
    ModelRef,
    Prior,
    RequestError,
    StyleRef,
    TrainRequest,
    TrainResult,
    Variation,
    decode_request,
    decode_result,
    encode,
    nearest_aspect,
)

ROOT = Path(__file__).resolve().parents[1]

REQUESTS = [
    ImagineRequest("me as an astronaut"),
    ImagineRequest(
        "me in Lisbon, naïve painting",
        negative="hats",
        seed=77,
        steps=12,
        guidance=5.5,
        aspect_ratio="3:2",
        count=4,
        variation=Variation(78, 0.25),
        model=ModelRef("ab" * 32, "cd" * 32, "zovaka", 3),
    ),
    ImagineRequest(
        "me at the kitchen table",
        seed=3,
        model=ModelRef("ab" * 32, "cd" * 32, "zovaka", 3),
        styles=(
            StyleRef("ikea", "ef" * 32, "01" * 32, 0.9, "ikea manual, flat vector"),
            StyleRef("ghibli", "23" * 32, "45" * 32, 0.7),
        ),
        source="67" * 32,
        strength=0.45,
    ),
    ImagineRequest("a red door", source="89" * 32, mask="ab" * 32, strength=0.95),
    ImagineRequest("a marble statue", edges="cd" * 32),
    ImagineRequest("me", seed=9, source="ef" * 32, strength=0.3, upscale=2),
    TrainRequest(
        ("a" * 64, "b" * 64), "zovaka", "tiny", seed=5, sample_every=0, checkpoint_every=2
    ),
    TrainRequest(
        ("a" * 64,),
        "zovaka",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        seed=5,
        sample_every=50,
        checkpoint_every=100,
        steps=800,
        recipe={"rank": 16, "learning_rate": 1e-4},
        prior=Prior(class_images=100, weight=1.0),
        likeness=tuple(n / 256 for n in range(128)),
        method="pivotal",
    ),
]
RESULTS = [
    ImagineResult(("a" * 64, "b" * 64), withheld=1, model_prompt="zovaka person, me"),
    ImagineResult(()),
    TrainResult(lora_id=3, version=2, steps=400, loss=0.125),
    TrainResult(
        3, 2, 400, 0.125, likeness=0.375, likeness_faces=3, likeness_samples=4, likeness_step=300
    ),
    TrainResult(
        3, 2, 400, 0.125, likeness=None, likeness_faces=0, likeness_samples=4, likeness_step=400
    ),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: f"{r.kind}-{id(r) % 1000}")
def test_every_request_survives_json_and_back(request_: jobs.JobRequest) -> None:
    text = encode(request_)
    assert json.loads(text)["v"] == jobs.FORMAT
    assert decode_request(request_.kind, text) == request_
    request_.check()


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: f"{r.kind}-{id(r) % 1000}")
def test_every_result_survives_json_and_back(result: jobs.JobResult) -> None:
    assert decode_result(result.kind, encode(result)) == result


def test_rows_written_before_versions_still_read() -> None:
    # The shape the queue stored before the contract existed (format 0).
    old_imagine = {
        "prompt": "a portrait",
        "negative_prompt": "blurry",
        "seed": None,
        "steps": 30,
        "guidance": 7.0,
        "aspect_ratio": "1:1",
        "count": 2,
        "lora": {"blob": "ab" * 32, "sha256": "cd" * 32, "trigger": "zovaka"},
        "lora_version": 2,
        "variation": {"seed": 9, "strength": 0.25},
    }
    assert decode_request("imagine", json.dumps(old_imagine)) == ImagineRequest(
        "a portrait",
        negative="blurry",
        count=2,
        variation=Variation(9, 0.25),
        model=ModelRef("ab" * 32, "cd" * 32, "zovaka", 2),
    )
    # Format 1: an imagine request from before styles and image-to-image.
    format_1 = json.loads(encode(ImagineRequest("a portrait", seed=4)))
    format_1["v"] = 1
    for key in ("styles", "source", "strength"):
        del format_1[key]
    assert decode_request("imagine", json.dumps(format_1)) == ImagineRequest("a portrait", seed=4)
    old_train = {
        "crops": ["a" * 64],
        "trigger": "zovaka",
        "base_model": "tiny",
        "seed": 3,
        "sample_every": 0,
        "checkpoint_every": 1,
        "prior": {"class_images": 4, "weight": 1},
    }
    decoded = decode_request("train", json.dumps(old_train))
    assert decoded == TrainRequest(
        ("a" * 64,), "zovaka", "tiny", 3, 0, 1, prior=Prior(class_images=4, weight=1.0)
    )
    assert isinstance(decoded, TrainRequest) and decoded.method == "lora"  # before format 5
    unknown = TrainRequest(("a" * 64,), "zovaka", "tiny", 3, 0, 1, method="hypernetwork")
    with pytest.raises(RequestError, match="method must be one of lora, textual_inversion"):
        unknown.check()
    old_result = {"images": ["a" * 64], "prompt": "zovaka person, a portrait", "withheld": 1}
    assert decode_result("imagine", json.dumps(old_result)) == ImagineResult(
        ("a" * 64,), withheld=1, model_prompt="zovaka person, a portrait"
    )


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("imagine", '{"v": 7, "kind": "imagine"}', "format 7, by another version"),
        ("upscale", "{}", "unknown job kind 'upscale'"),
        ("imagine", "not json", "not JSON"),
        ("imagine", "[1, 2]", "not a JSON object"),
        ("train", '{"v": 1, "kind": "imagine"}', "a train job but its data says 'imagine'"),
        ("imagine", '{"v": 1, "kind": "imagine", "prompt": 5}', "'prompt' should be str, got 5"),
        ("train", '{"v": 1, "kind": "train", "crops": []}', "has no 'trigger'"),
        ("train", '{"v": 1, "kind": "train", "crops": [1]}', "'crops' should list strings"),
        ("imagine", '{"v": "2", "kind": "imagine"}', "format '2', by another version"),
        ("imagine", '{"v": 2, "kind": "imagine", "styles": [1]}', "'styles' should list objects"),
    ],
)
def test_data_this_version_cannot_read_says_why(kind: str, text: str, message: str) -> None:
    with pytest.raises(JobFormatError, match=message):
        decode_request(kind, text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": " "}, "the prompt is empty"),
        ({"prompt": "x" * 1001}, "the prompt has 1001 characters, at most 1000"),
        ({"negative": "x" * 1001}, "the negative prompt has 1001 characters"),
        ({"aspect_ratio": "7:5"}, "aspect ratio '7:5' is not offered; one of 1:1, "),
        ({"count": 0}, "count must be 1 to 4, got 0"),
        ({"steps": 101}, "steps must be 1 to 100, got 101"),
        ({"guidance": 20.5}, "guidance must be 0 to 20, got 20.5"),
        ({"seed": -1}, "seed must be 0 to 4294967291, got -1"),
        ({"variation": Variation(1, 1.5)}, "variation strength must be 0 to 1, got 1.5"),
        ({"model": ModelRef("a", "b", "two words", 1)}, "trigger must be one alphanumeric"),
        (
            {"styles": tuple(StyleRef(n, "k", "s") for n in ("a", "b", "c"))},
            r"at most 2 styles can be mixed, got 3 \(a, b, c\)",
        ),
        ({"styles": (StyleRef("a", "k", "s"),) * 2}, "style 'a' is asked for twice"),
        ({"styles": (StyleRef("Ikea!", "k", "s"),)}, "style name 'Ikea!' is not allowed"),
        (
            {"styles": (StyleRef("ikea", "k", "s", 2.5),)},
            "the weight of style 'ikea' must be 0 to 2, got 2.5",
        ),
        (
            {"styles": (StyleRef("ikea", "k", "s", trigger="a\nb"),)},
            "trigger words of style 'ikea' must be one line",
        ),
        ({"source": "k", "strength": 0.05}, "strength must be 0.1 to 0.95, got 0.05"),
        ({"source": "k", "strength": 0.99}, "strength must be 0.1 to 0.95, got 0.99"),
        ({"source": ""}, "the source picture's key is empty"),
        ({"source": "k", "variation": Variation(1, 0.2)}, "variations are of text-to-image"),
        (
            {"source": "k", "strength": 0.2, "steps": 4},
            "with strength 0.2, steps must be at least 5 \\(got 4\\)",
        ),
        ({"mask": "m"}, "a mask needs the picture it masks"),
        ({"mask": ""}, "the mask picture's key is empty"),
        ({"edges": "e", "source": "k"}, "edge control starts from noise"),
        ({"source": "k", "upscale": 3}, "upscale must be 1 \\(none\\) or 2, got 3"),
        ({"upscale": 2}, "an upscale needs the picture to enlarge"),
        ({"source": "k", "upscale": 2, "count": 2}, "an upscale makes one picture, not 2"),
    ],
)
def test_a_bad_request_quotes_the_value_and_what_is_allowed(
    change: dict[str, object], message: str
) -> None:
    request = ImagineRequest(**({"prompt": "me"} | change))  # type: ignore[arg-type]
    with pytest.raises(RequestError, match=message):
        request.check()


def test_the_option_ranges_the_chats_show_are_the_ones_checked() -> None:
    bounds: tuple[jobs.Bound[Any], ...] = (
        jobs.STEPS,
        jobs.COUNT,
        jobs.GUIDANCE,
        jobs.SEED,
        jobs.STRENGTH,
        jobs.STYLE_WEIGHT,
    )
    for bound in bounds:
        bound.check(bound.low)
        bound.check(bound.high)
        bound.check(bound.default)
        with pytest.raises(RequestError, match=f"{bound.name} must be"):
            bound.check(bound.high + 1)


def test_a_source_is_cropped_to_the_nearest_offered_aspect_ratio() -> None:
    assert nearest_aspect(1000, 1000) == "1:1"
    assert nearest_aspect(3024, 4032) == "3:4"
    assert nearest_aspect(1920, 1080) == "16:9"
    assert nearest_aspect(4000, 1000) == "16:9"  # beyond the widest: the widest
    with pytest.raises(RequestError, match="0x10 pixels"):
        nearest_aspect(0, 10)


def _decodes_json(path: Path) -> list[str]:
    """Calls in a module that read JSON, or job data, themselves."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name.endswith(("json.loads", "json.load", "decode_request", "decode_result")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
        elif isinstance(node, ast.Attribute) and node.attr in ("params", "result"):
            # A job row's raw JSON columns.
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    return found


def test_no_chat_adapter_decodes_job_json() -> None:
    modules = sorted((ROOT / "bot" / "telegram").glob("*.py"))
    modules += sorted((ROOT / "bot" / "discord").glob("*.py"))
    assert len(modules) > 10
    assert [hit for path in modules for hit in _decodes_json(path)] == []
    # The check itself finds what it looks for.
    assert _decodes_json(ROOT / "engine" / "jobs.py")


def _reaches_around_the_core(path: Path) -> list[str]:
    """Attribute reads that go past the core to its storage: `x.repo`, `x.db`, `x.jobs`."""
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr in ("repo", "db", "jobs")
    ]


def test_no_chat_adapter_reaches_past_the_core_into_storage() -> None:
    modules = sorted((ROOT / "bot" / "telegram").glob("*.py"))
    modules += sorted((ROOT / "bot" / "discord").glob("*.py"))
    assert [hit for path in modules for hit in _reaches_around_the_core(path)] == []
    assert _reaches_around_the_core(ROOT / "bot" / "core" / "requests.py")
