"""The encoder signal's plumbing on the offline tiny model (random weights, so only the
mechanics are checked: a prompt equal to a concept phrase is that phrase's nearest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.safety import PromptFilter
from engine.safety.encoder import EncoderSignal


@pytest.fixture(scope="module")
def signal(tmp_path_factory: pytest.TempPathFactory) -> EncoderSignal:
    from transformers import CLIPTextModel, CLIPTokenizer

    from engine.models.tiny import ensure_tiny

    tiny: Path = ensure_tiny(tmp_path_factory.getbasetemp() / "models" / "tiny")
    tokenizer = CLIPTokenizer.from_pretrained(tiny / "tokenizer", local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(tiny / "text_encoder", local_files_only=True)
    phrases = {
        "violence": ("a crimson scene in an alley at night",),
        "hate": ("a rally with red armbands",),
    }
    return EncoderSignal(tokenizer, encoder, phrases, threshold=0.9999)


def test_a_concept_phrase_is_its_own_nearest(signal: EncoderSignal) -> None:
    sims = signal.similarities("a crimson scene in an alley at night")
    assert sims["violence"] == pytest.approx(1.0, abs=1e-4)
    assert signal.category("a crimson scene in an alley at night") == "violence"
    assert signal.category("a rally with red armbands") == "hate"


def test_the_filter_reports_the_encoder_as_the_refusing_layer(signal: EncoderSignal) -> None:
    # Words in no term list, and no classifier: only the encoder can refuse.
    with_encoder = PromptFilter(classifier=None, encoder=signal)
    verdict = with_encoder.check("a crimson scene in an alley at night")
    assert (verdict.allowed, verdict.category, verdict.layer) == (False, "violence", "encoder")
    assert with_encoder.check("a watercolour of a lighthouse").allowed
