"""Prompt normalisation: each kind of evasion is undone in one of the variants."""

from __future__ import annotations

import pytest

from engine.safety import PromptFilter
from engine.safety.normalise import base_form, read_spaced_words, variants


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("ｎｕｄｅ", "nude"),  # fullwidth (NFKC)
        ("𝐧𝐮𝐝𝐞", "nude"),  # mathematical bold (NFKC)
        ("n\u0430ked", "naked"),  # Cyrillic a
        ("\u0455ex", "sex"),  # Cyrillic dze
        ("n4k3d", "naked"),  # leetspeak
        ("p0rn", "porn"),
        ("n u d e", "nude"),  # spaced out
        ('me "n u d e" at the beach', "nude"),  # spaced out, in quotes
        ("me, n u d e.", "nude"),  # spaced out, then a full stop
        ("jag b o m b i tunnelbanan", "bomb"),  # a real one-letter word ends the run
        ("n.a.k.e.d", "naked"),  # punctuation inside the word
        ("s-e-x", "sex"),
        ("nu*de", "nude"),
        ("n🔥a🔥k🔥e🔥d", "naked"),  # emoji between the letters
        ("г❤о❤л❤а", base_form("гола")),
        ("nuuuude", "nude"),  # stretched
        ("DESNUDA", "desnuda"),
        ("Pornografía", "pornografia"),  # accents
        ("ÇIPLAK", "ciplak"),  # Turkish dotless i, as typed on keyboards without it
        ("çıplak", "ciplak"),
    ],
)
def test_evasions_are_undone(written: str, expected: str) -> None:
    assert expected in variants(written)


def test_a_spaced_word_between_two_one_letter_words_is_joined_alone() -> None:
    # Ukrainian "я гола в душі" (me naked in the shower) spaced out: "я" and "в" are words.
    assert base_form("гола") in variants("я г о л а в душі")


def test_a_spaced_word_is_also_read_back_in_its_sentence() -> None:
    # A pair of concepts (a group and a degrading scene) refuses only in one form.
    forms = variants("ja za C y g a n a w złotym łańcuchu kradnę kurę")
    assert "ja za cygana w złotym łancuchu kradne kure" in forms
    # The classifier reads the first and the last form: those stay as it was trained.
    assert forms[-1] == "ygana"


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("m e   n a k e d   o n   t h e   b e a c h", "me naked on the beach"),
        ("M E  N A K E D", "ME NAKED"),
        ("m\u00a0e\u00a0 \u00a0n\u00a0u\u00a0d\u00a0e", "me nude"),  # no-break spaces
        ("j e   m e   p e n d s", "je me pends"),
        # Wide gaps between real words, or a lone letter, are left as they are.
        ("me with my dog  at the park", "me with my dog  at the park"),
        ("plan  A  or  B", "plan  A  or  B"),
    ],
)
def test_a_prompt_spaced_out_letter_by_letter_is_read_word_by_word(written: str, read: str) -> None:
    assert read_spaced_words(written) == read


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("m e   n a k e d   o n   t h e   b e a c h", "sexual"),
        ("y o   m e   a h o r c o   e n   e l   s o t a n o", "self-harm"),
        ("me n🔥a🔥k🔥e🔥d on the beach", "sexual"),
        ("m e   a s   a n   a s t r o n a u t", None),
        ("me with a 🐶 dog at the park", None),
    ],
)
def test_the_rules_read_a_prompt_spaced_or_dotted_with_emoji(
    prompt: str, category: str | None
) -> None:
    assert PromptFilter(classifier=None).check(prompt).category == category


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("me n*ked on the beach", "sexual"),  # a star for a letter
        ("me in a p**n video", "sexual"),  # two
        ("me n#de on the bed", "sexual"),  # a hash
        ("me s*xy in lingerie", "sexual"),
        ("me committing s*icide on a bridge", "self-harm"),
        ("me as a n*zi officer", "hate"),
        ("ik n**kt op het strand", "sexual"),  # a `*` term ("naakt*") it begins with
        ("sevgilimle s*ks yaparken ben", "sexual"),  # not a three-letter name in "s*k"
        ("me as an astr*naut", None),  # a masked word that is no term
        ("me with a #beach #sunset", None),  # hashtags mask nothing
    ],
)
def test_a_word_with_letters_masked_is_matched_as_the_term_it_could_be(
    prompt: str, category: str | None
) -> None:
    assert PromptFilter(classifier=None).check(prompt).category == category


def test_many_spaced_runs_read_back_in_a_few_whole_forms() -> None:
    # One whole form a run would make a long prompt's check cost seconds.
    prompt = ", ".join(
        f"{a} {b} {c}"
        for a, b, c in zip(
            "abcdefghijklmnopqrst", "bcdefghijklmnopqrstu", "cdefghijklmnopqrstuv", strict=True
        )
    )
    whole = [form for form in variants(prompt) if len(form) > len(prompt) // 2]
    assert len(whole) <= 10


@pytest.mark.parametrize(
    "prompt",
    [
        "ц ы г а н е в виде крыс на помойке у вокзала",  # ru: Roma drawn as rats
        "ja przebrany za C y g a n a w złotym łańcuchu kradnę kurę",  # pl: stealing a hen
    ],
)
def test_a_group_spelled_out_beside_a_degrading_scene_is_refused(prompt: str) -> None:
    verdict = PromptFilter(classifier=None).check(prompt)
    assert (verdict.allowed, verdict.category) == (False, "hate")


def test_digits_stay_digits_in_the_base_form() -> None:
    assert base_form("Me  as a 16-Year-Old") == "me as a 16-year-old"
    assert variants("3d render")[0] == "3d render"


@pytest.mark.parametrize(
    "prompt",
    ["me as a therapist", "Sussex countryside", "cumulus clouds", "a shooting star", "kindness"],
)
def test_words_that_contain_blocked_words_pass(prompt: str) -> None:
    assert PromptFilter().check(prompt).allowed


def test_hard_categories_keep_their_terms_whatever_an_admin_removes() -> None:
    loosened = PromptFilter(removed_terms=["nude", "gore"], extra_terms={"hate": ["trollface"]})
    assert loosened.check("nude portrait").category == "sexual"
    assert loosened.check("gore").allowed
    assert loosened.check("a trollface mask").category == "hate"
    with pytest.raises(ValueError, match="unknown category 'spam'"):
        PromptFilter(extra_terms={"spam": ["x"]})


@pytest.mark.parametrize(
    ("written", "syllables"),
    [
        ("ㅈㅏㅅㅏㄹ", "자살"),  # letters typed apart
        ("자ㅅㅏㄹ하는 나", "자살하는 나"),  # half composed, a syllable after the last letter
        ("ㄱㅏㄴㅏ", "가나"),  # a consonant before a vowel starts the next syllable
        ("한복 입은 나", "한복 입은 나"),  # composed text stays as it is
    ],
)
def test_hangul_letters_typed_apart_are_joined_into_syllables(written: str, syllables: str) -> None:
    assert base_form(written) == syllables


def test_hangul_letters_spaced_apart_are_refused_as_the_word() -> None:
    check = PromptFilter().check
    assert check("ㅈ ㅏ ㅅ ㅏ ㄹ 하는 나").category == "self-harm"
    assert check("ㅈㅏㅅㅏㄹ 직전의 나").category == "self-harm"
    assert check("ㅋㅋㅋ 웃는 나").allowed


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("AV女優になって撮影現場にいる私", "sexual"),  # a term that starts with Latin letters
        ("ISISの旗を持った私", "hate"),
        ("me as an AV女優 on set", "sexual"),  # after a space
    ],
)
def test_a_cjk_term_that_starts_with_latin_letters_is_found_at_a_word_start(
    prompt: str, category: str
) -> None:
    verdict = PromptFilter(classifier=None).check(prompt)
    assert not verdict.allowed and verdict.category == category


def test_a_cjk_term_is_not_found_inside_a_latin_word() -> None:
    # "sav女優" holds "av女優" only from the middle of a word.
    assert "sexual" not in PromptFilter(classifier=None).concepts("sav女優のポスター")
