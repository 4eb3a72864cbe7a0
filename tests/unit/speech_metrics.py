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


def _align(ref: list[str], hyp: list[str]) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)`` where ``ref[i] == hyp[j]`` on one minimal Levenshtein path."""
    cost = [[0] * (len(hyp) + 1) for _ in range(len(ref) + 1)]
    for i in range(len(ref) + 1):
        cost[i][0] = i
    for j in range(len(hyp) + 1):
        cost[0][j] = j
    for i, r in enumerate(ref, 1):
        for j, h in enumerate(hyp, 1):
            cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1, cost[i - 1][j - 1] + (r != h))
    pairs = []
    i, j = len(ref), len(hyp)
    while i and j:
        if cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] == hyp[j - 1]:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def word_speaker_accuracy(
    truth: list[dict[str, Any]], segments: list[dict[str, Any]]
) -> tuple[float, float, int]:
    """``(all words, turn-edge words, edge words counted)``: share of recognised words whose
    speaker is right, under the best one-to-one mapping of predicted onto true labels.

    ``truth`` is [{speaker, text}] in order; ``segments`` the result's segments with their
    ``words``. Words are matched by aligning the normalised reference and hypothesis word
    sequences (misrecognised words are left out: they have no true speaker). Edge words
    are the first and last word of every turn next to a turn of another speaker.
    """
    ref: list[tuple[str, str, bool]] = []
    for n, turn in enumerate(truth):
        words = normalize(turn["text"])
        before = n > 0 and truth[n - 1]["speaker"] != turn["speaker"]
        after = n + 1 < len(truth) and truth[n + 1]["speaker"] != turn["speaker"]
        for k, word in enumerate(words):
            edge = (k == 0 and before) or (k == len(words) - 1 and after)
            ref.append((word, turn["speaker"], edge))
    hyp: list[tuple[str, str]] = [
        (token, seg["speaker"])
        for seg in segments
        for word in seg.get("words") or []
        for token in normalize(word["word"])
    ]
    pairs = _align([r[0] for r in ref], [h[0] for h in hyp])
    true_labels = sorted({r[1] for r in ref})
    pred_labels = sorted({h[1] for h in hyp})
    padded = pred_labels + [None] * max(0, len(true_labels) - len(pred_labels))
    best: tuple[int, int] = (-1, -1)
    for perm in itertools.permutations(padded, len(true_labels)):
        mapping = dict(zip(true_labels, perm, strict=True))
        right = [mapping[ref[i][1]] == hyp[j][1] for i, j in pairs]
        edges = [ok for (i, _j), ok in zip(pairs, right, strict=True) if ref[i][2]]
        best = max(best, (sum(right), sum(edges)))
    edge_count = sum(ref[i][2] for i, _j in pairs)
    return best[0] / max(1, len(pairs)), best[1] / max(1, edge_count), edge_count
