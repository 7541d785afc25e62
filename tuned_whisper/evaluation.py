"""WER and CER, raw and after Whisper's English text normaliser.

Scores are corpus-level: errors are summed over all utterances and divided by the total number of
reference words (or characters), as jiwer does for lists, so long utterances weigh more than short ones.

The normalised scores use Whisper's ``EnglishTextNormalizer`` (the copy in transformers) with Whisper's
British-to-American spelling map, read from the ``whisper-normalizer`` package's ``english.json`` (MIT,
the same file as openai/whisper's ``whisper/normalizers/english.json``), so nothing is downloaded.
It lower-cases, drops punctuation and fillers ("um", "hmm"), expands contractions and titles
("mr" -> "mister"), turns spelled-out numbers into digits ("twenty five" -> "25", but "one" stays
"one" and a lone "1" becomes "one") and maps British spellings to American ("colour" -> "color").

A reference that normalises to nothing (e.g. "Hmm.") is kept: it adds no reference words, and any
hypothesis words for it count as insertions, so a model that hallucinates on fillers is penalised.
When a corpus has no reference words at all, a rate is 0.0 without errors and ``math.inf`` with any.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources

import jiwer

SPELLING_PACKAGE = "whisper_normalizer"
SPELLING_RESOURCE = "normalizers/english.json"


@dataclass(frozen=True)
class ErrorRates:
    """Corpus-level error rates as fractions (0.25 means 25 %)."""

    wer: float
    cer: float
    wer_normalized: float
    cer_normalized: float
    n_utterances: int
    n_words: int
    """Reference words before normalisation (whitespace-separated tokens)."""

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON output."""
        return asdict(self)


def score(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorRates:
    """Score hypotheses against references, raw and after Whisper's English normaliser."""
    _check_inputs(references, hypotheses)
    refs, hyps = list(references), list(hypotheses)
    norm_refs, norm_hyps = [normalize(t) for t in refs], [normalize(t) for t in hyps]
    raw_words = jiwer.process_words(refs, hyps)
    return ErrorRates(
        wer=_word_error_rate(raw_words),
        cer=_char_error_rate(refs, hyps),
        wer_normalized=_word_error_rate(jiwer.process_words(norm_refs, norm_hyps)),
        cer_normalized=_char_error_rate(norm_refs, norm_hyps),
        n_utterances=len(refs),
        n_words=_reference_count(raw_words),
    )


def normalize(text: str) -> str:
    """Whisper's English text normalisation (lower case, no punctuation, American spelling...)."""
    return _english_normalizer()(text)


def format_table(rates: ErrorRates, title: str) -> str:
    """A small aligned text table of WER and CER, raw and normalised, as percentages."""
    rows = [
        ("metric", "raw", "normalised"),
        ("WER", _percent(rates.wer), _percent(rates.wer_normalized)),
        ("CER", _percent(rates.cer), _percent(rates.cer_normalized)),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{title} ({rates.n_utterances} utterances, {rates.n_words} words)"]
    for name, raw, normalised in rows:
        lines.append(f"{name:<{widths[0]}}  {raw:>{widths[1]}}  {normalised:>{widths[2]}}")
    return "\n".join(lines)


def _check_inputs(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(
            f"got {len(references)} references but {len(hypotheses)} hypotheses; "
            "pass one hypothesis per reference, in the same order"
        )
    if not references:
        raise ValueError("nothing to score: references and hypotheses are empty")


def _word_error_rate(output: jiwer.WordOutput) -> float:
    errors = output.substitutions + output.deletions + output.insertions
    return _rate(errors, _reference_count(output))


def _char_error_rate(references: list[str], hypotheses: list[str]) -> float:
    output = jiwer.process_characters(references, hypotheses)
    errors = output.substitutions + output.deletions + output.insertions
    return _rate(errors, output.hits + output.substitutions + output.deletions)


def _reference_count(output: jiwer.WordOutput) -> int:
    return output.hits + output.substitutions + output.deletions


def _rate(errors: int, total: int) -> float:
    # jiwer returns 1.0 for "insertions against an empty corpus"; x/0 reads more honestly as inf.
    if total == 0:
        return 0.0 if errors == 0 else math.inf
    return errors / total


def _percent(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value * 100:.2f}%"


@cache
def _english_normalizer() -> Callable[[str], str]:
    # Imported here so that importing this module stays cheap (transformers takes about a second).
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer(load_spelling_mapping())


@cache
def load_spelling_mapping() -> dict[str, str]:
    """Whisper's British-to-American spelling map, from the installed ``whisper-normalizer`` package."""
    try:
        resource = resources.files(SPELLING_PACKAGE).joinpath(SPELLING_RESOURCE)
        return json.loads(resource.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise RuntimeError(
            f"Whisper's English spelling map ({SPELLING_PACKAGE}/{SPELLING_RESOURCE}) is missing: "
            "install the pinned requirements (pip install -r requirements.txt, "
            "which includes whisper-normalizer)"
        ) from error
