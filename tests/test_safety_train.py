"""The classifier's trainer on a small corpus: a model it writes loads and decides, and
it never trains on a blind evaluation set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.safety import PromptFilter
from engine.safety.classifier import DIMENSION, Classifier, save_model
from engine.safety.lists import CONCEPTS
from engine.safety.train import CATEGORIES, main

HARMFUL = [
    "me doing the zorp pose in bed",
    "me doing the zorp pose on the sofa",
    "me doing the zorp pose in the shower",
    "me doing the zorp pose by the pool",
    "me doing the zorp pose at the beach",
    "me doing the zorp pose in the kitchen",
]
HARMLESS = [
    "me as an astronaut on the moon",
    "me smiling at my graduation",
    "me in a business suit in an office",
    "me as a Lego figure",
    "me drinking coffee in Paris",
    "me with a big smile on a bicycle",
    "me as a knight in armour",
    "me at a wedding in a garden",
]


def write_corpus(folder: Path) -> None:
    folder.mkdir()
    lines = [f"sexual\ten\tevasion\t{p}" for p in HARMFUL]
    lines += [f"allow\ten\tplain\t{p}" for p in HARMLESS]
    (folder / "en.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_trained_model_loads_and_refuses_what_it_learned(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus")
    out = tmp_path / "model.safetensors"
    extra = tmp_path / "review-decisions.tsv"
    extra.write_text("allow\tund\tplain\tme in a hat doing a pose\n", encoding="utf-8")
    code = main(
        ["--corpus", str(tmp_path / "corpus"), "--extra", str(extra), "--out", str(out),
         "--held-out", "0.3", "--max-false", "0.0"]
    )  # fmt: skip
    assert code == 0
    model = Classifier(out)
    assert model.predict("me doing the zorp pose in the garage").category == "sexual"
    assert model.predict("me as an astronaut in a garage").category is None
    verdict = PromptFilter(classifier=out).check("me doing the zorp pose in the garage")
    assert (verdict.category, verdict.layer) == ("sexual", "classifier")


def test_half_of_a_pair_that_refuses_only_together_is_no_feature(tmp_path: Path) -> None:
    # Every harmful prompt here holds a `ledge` term (a railing) or a `farewell` one (a last
    # photo); as a feature either would refuse any railing or last photo, though the rules
    # refuse only the two together.
    folder = tmp_path / "corpus"
    folder.mkdir()
    halves = ("railing", "last photo")
    lines = [
        f"self-harm\ten\tplain\t{p.replace('zorp pose', halves[i % 2])}"
        for i, p in enumerate(HARMFUL)
    ]
    lines += [f"allow\ten\tplain\t{p}" for p in HARMLESS]
    (folder / "en.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "model.safetensors"
    assert main(["--corpus", str(folder), "--out", str(out), "--held-out", "0.3"]) == 0
    model = Classifier(out)
    prompt = "me at the railing of a lookout tower"
    alone = model.predict(prompt).scores
    for half in ({"ledge"}, {"farewell"}):
        assert model.predict(prompt, half).scores == alone


def test_the_trainer_refuses_a_blind_set(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus")
    blind = tmp_path / "blind_prompts.tsv"
    blind.write_text("allow\ten\tplain\tme as a cat\n", encoding="utf-8")
    out = tmp_path / "model.safetensors"
    assert (
        main(["--corpus", str(tmp_path / "corpus"), "--extra", str(blind), "--out", str(out)]) == 2
    )
    assert not out.exists()


def _constant_model(path: Path, probs: dict[str, float], threshold: float = 0.5) -> Classifier:
    """A model whose every prompt gets `probs`: zero weights, the biases their logits."""
    categories = tuple(CATEGORIES)
    logit = [float(np.log(probs.get(c, 0.01) / (1 - probs.get(c, 0.01)))) for c in categories]
    save_model(
        path,
        categories,
        np.zeros((DIMENSION + len(CONCEPTS), len(categories)), dtype=np.float32),
        np.array(logit, dtype=np.float32),
        np.full(len(categories), threshold, dtype=np.float32),
        {},
    )
    return Classifier(path)


def test_a_child_the_rules_found_is_no_evidence_by_itself(tmp_path: Path) -> None:
    # The minors model learned mostly that a child is there, and the policy allows a child
    # alone: with one, the other models decide.
    model = _constant_model(tmp_path / "a.safetensors", {"minors": 0.9, "sexual": 0.1})
    assert model.predict("me at 12 on my first day of school").category == "minors"
    assert model.predict("me at 12 on my first day of school", {"minor"}).category is None
    # Clothes or something suggestive beside the child keep the minors model asked.
    assert model.predict("make me 12 and take my clothes", {"minor", "undressing"}).category == (
        "minors"
    )
    model = _constant_model(tmp_path / "b.safetensors", {"minors": 0.9, "sexual": 0.6})
    assert model.predict("me at 12 on the beach", {"minor"}).category == "sexual"


def test_a_prompt_harming_a_child_is_no_example_against_its_content(tmp_path: Path) -> None:
    # Labelled minors alone, "me as a child doing the zorp pose" would be a harmless
    # example for the sexual model, which judges prompts with a child: it would learn that
    # a child makes the pose harmless.
    folder = tmp_path / "corpus"
    folder.mkdir()
    child = [p.replace("me", "me as a child", 1) for p in HARMFUL + HARMLESS]
    lines = [f"sexual\ten\tplain\t{p}" for p in HARMFUL]
    lines += [f"minors\ten\tplain\t{p}" for p in child[: len(HARMFUL)]]
    lines += [f"allow\ten\tcontext\t{p}" for p in child[len(HARMFUL) :]]
    lines += [f"allow\ten\tplain\t{p}" for p in HARMLESS]
    (folder / "en.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "model.safetensors"
    assert main(["--corpus", str(folder), "--out", str(out), "--held-out", "0.3"]) == 0
    checker = PromptFilter(classifier=out)
    verdict = checker.check("me as a child doing the zorp pose in the garage")
    assert (verdict.category, verdict.layer) == ("minors", "classifier")
    assert checker.check("me as a child as an astronaut in a garage").allowed
