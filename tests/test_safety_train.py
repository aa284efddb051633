"""The classifier's trainer on a small corpus: a model it writes loads and decides, and
it never trains on a blind evaluation set."""

from __future__ import annotations

from pathlib import Path

from engine.safety import PromptFilter
from engine.safety.classifier import Classifier
from engine.safety.train import main

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
