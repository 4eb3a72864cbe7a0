"""Quality measures for the speech tests: word error rate and speaker attribution."""

from __future__ import annotations

import itertools
import re
from typing import Any

_NUMBERS = {
    "0": "zero",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
    "10": "ten",
    "11": "eleven",
    "12": "twelve",
}


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation; small numerals spelt out ("10" → "ten").

    Whisper writes numbers as digits while the reference spells them; counting that as
    an error would measure formatting, not recognition.
    """
    words = re.findall(r"[a-z0-9']+", text.lower().replace("%", " percent"))
    return [_NUMBERS.get(w, w) for w in words]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by Levenshtein alignment."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        raise ValueError("empty reference")
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / len(ref)


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def speaker_accuracy(truth: list[dict[str, Any]], predicted: list[dict[str, Any]]) -> float:
    """Share of true speech time whose predicted speaker is right, under the best mapping.

    ``truth`` and ``predicted`` are [{start, end, speaker}]. Cluster labels are arbitrary,
    so every one-to-one mapping of predicted labels onto true speakers is tried and the
    best counts (few speakers: brute force is exact and cheap). Time no predicted
    segment covers counts as wrong.
    """
    true_labels = sorted({t["speaker"] for t in truth})
    pred_labels = sorted({p["speaker"] for p in predicted})
    total = sum(t["end"] - t["start"] for t in truth)
    best = 0.0
    padded = pred_labels + [None] * max(0, len(true_labels) - len(pred_labels))
    for perm in itertools.permutations(padded, len(true_labels)):
        mapping = dict(zip(true_labels, perm, strict=True))
        right = sum(
            _overlap(t["start"], t["end"], p["start"], p["end"])
            for t in truth
            for p in predicted
            if p["speaker"] == mapping[t["speaker"]]
        )
        best = max(best, right)
    return best / total
