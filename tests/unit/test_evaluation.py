"""WER / CER scoring: hand-computed examples, raw and after Whisper's English normaliser."""

import math

import jiwer
import pytest

from tuned_whisper.evaluation import ErrorRates, format_table, load_spelling_mapping, normalize, score


def test_spelled_out_digit_is_an_error_raw_but_not_after_normalising() -> None:
    rates = score(["press 1 to continue"], ["press one to continue"])

    assert rates.wer == pytest.approx(1 / 4)
    # "1" -> "one" is one substitution and two insertions over 19 reference characters.
    assert rates.cer == pytest.approx(3 / 19)
    assert rates.wer_normalized == 0.0
    assert rates.cer_normalized == 0.0
    assert (rates.n_utterances, rates.n_words) == (1, 4)


def test_british_spelling_case_and_punctuation_are_ignored_after_normalising() -> None:
    rates = score(["The colour is grey."], ["the color is gray"])

    assert rates.wer == pytest.approx(3 / 4)  # "The", "colour", "grey." all differ raw
    assert rates.wer_normalized == 0.0
    assert rates.cer_normalized == 0.0


def test_rates_are_corpus_level_not_a_mean_of_utterances() -> None:
    rates = score(["a b c d", "e f"], ["a x c d", "e"])

    # One substitution plus one deletion over six reference words (the per-utterance mean would be 0.375).
    assert rates.wer == pytest.approx(2 / 6)
    assert rates.wer == pytest.approx(jiwer.wer(["a b c d", "e f"], ["a x c d", "e"]))


def test_a_real_normalised_error_still_counts() -> None:
    rates = score(["Please enter your password."], ["please enter you password"])

    assert rates.wer_normalized == pytest.approx(1 / 4)
    assert rates.cer_normalized == pytest.approx(1 / len("please enter your password"))


def test_reference_that_normalises_to_nothing_counts_hypothesis_words_as_insertions() -> None:
    silent = score(["Hmm.", "yes please"], ["", "yes please"])
    hallucinated = score(["Hmm.", "yes please"], ["hello", "yes please"])

    assert silent.wer_normalized == 0.0
    assert hallucinated.wer_normalized == pytest.approx(1 / 2)


def test_corpus_without_reference_words_scores_zero_or_infinity() -> None:
    assert score(["Um."], ["um"]).wer_normalized == 0.0
    assert math.isinf(score(["Um."], ["hello"]).wer_normalized)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        score(["a", "b"], ["a"])


def test_empty_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="nothing to score"):
        score([], [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Colour!", "color"),
        ("Hello, World!", "hello world"),
        ("Mr. Smith", "mister smith"),
        ("twenty five dollars", "$25"),
        ("Press 1 to continue.", "press one to continue"),
        ("Um, I won't.", "i will not"),
    ],
)
def test_normalize_matches_whisper_english_rules(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_spelling_mapping_comes_from_the_installed_package() -> None:
    mapping = load_spelling_mapping()

    assert len(mapping) > 1500
    assert mapping["colour"] == "color"


def test_format_table_prints_aligned_percentages() -> None:
    rates = ErrorRates(
        wer=0.125, cer=0.05, wer_normalized=0.0625, cer_normalized=0.0, n_utterances=3, n_words=16
    )

    table = format_table(rates, "ivr-en dev")
    title, *rows = table.splitlines()

    assert title == "ivr-en dev (3 utterances, 16 words)"
    assert rows[1].split() == ["WER", "12.50%", "6.25%"]
    assert rows[2].split() == ["CER", "5.00%", "0.00%"]
    assert len({len(row) for row in rows}) == 1


def test_format_table_shows_infinite_rates() -> None:
    table = format_table(score(["Um."], ["hello"]), "fillers")

    assert "inf" in table.splitlines()[2]


def test_to_dict_holds_every_field() -> None:
    rates = score(["a b"], ["a c"])

    assert rates.to_dict() == {
        "wer": 0.5,
        "cer": pytest.approx(1 / 3),
        "wer_normalized": 0.5,
        "cer_normalized": pytest.approx(1 / 3),
        "n_utterances": 1,
        "n_words": 2,
    }
