"""Speaker-count methods compared by ``bench/speakers.py``, each with the grid of its one
parameter. ``gap`` is what ``morag_worker.processors.speakers`` ships; ``elbow`` is the
method it replaced (0.03 as shipped; ``elbow-t`` lets the development set pick the gain)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from morag_worker.models.cache import ModelCache
from morag_worker.processors import diarize, speakers
from morag_worker.processors.media import SAMPLE_RATE


@dataclass
class Embedded:
    """A conversation reduced to what counting needs: its window embeddings and truth."""

    k: int
    similarity: str
    long: bool
    truth: list[dict[str, Any]]
    windows: list[tuple[float, float, float, float]]
    vectors: np.ndarray
    gaps: dict[int, tuple[float, float]] = field(default_factory=dict)
    refs: list[np.ndarray] | None = None


def embed_set(conversations: list[Any]) -> list[Embedded]:
    encoder = diarize._encoder(ModelCache(), "cpu")
    out = []
    for c in conversations:
        windows = diarize._windows(diarize.speech_regions(c.audio))
        clips = [c.audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b, *_ in windows]
        vectors = diarize._embed(encoder, clips)
        out.append(
            Embedded(len(c.voices), c.similarity, len(c.turns) >= 50, c.truth(), windows, vectors)
        )
    return out


def labels_to_turns(e: Embedded, labels: np.ndarray) -> list[dict[str, Any]]:
    """Window labels as merged turns (no edge refinement), for speaker_accuracy."""
    cores = [
        (c0, c1, f"S{label}") for (_a, _b, c0, c1), label in zip(e.windows, labels, strict=True)
    ]
    turns = diarize._merge([diarize.Turn(*core) for core in cores])
    return [t.__dict__ for t in turns]


def elbow(x: np.ndarray, gain: float) -> int:
    """The count before this change: the last k whose extra cluster raised the mean
    window-to-centroid similarity by at least ``gain`` (0.03 shipped)."""
    _labels, score = speakers.kmeans(x, 1)
    k = 1
    for candidate in range(2, min(speakers.MAX_SPEAKERS, len(x)) + 1):
        _labels, candidate_score = speakers.kmeans(x, candidate)
        if candidate_score - score < gain:
            break
        k, score = candidate, candidate_score
    return k


def eigengap(x: np.ndarray, _unused: object = None) -> int:
    """NME-SC (Park et al., 2020): k-nearest-neighbour affinity for every p, eigengap of its
    Laplacian; the p with the smallest p / gap decides. Parameter-free."""
    n = len(x)
    if n < 4:
        return 1
    affinity = x @ x.T
    order = np.argsort(-affinity, axis=1)
    best = (np.inf, 1)
    for p in sorted({max(2, int(n * f)) for f in np.linspace(0.02, 0.3, 12)}):
        graph = np.zeros_like(affinity)
        np.put_along_axis(graph, order[:, :p], 1.0, axis=1)
        graph = (graph + graph.T) / 2
        eigen = np.linalg.eigvalsh(np.diag(graph.sum(axis=1)) - graph)[: speakers.MAX_SPEAKERS + 1]
        gaps = np.diff(eigen)
        ratio = p / max(float(gaps.max()), 1e-9)
        if ratio < best[0]:
            best = (ratio, int(np.argmax(gaps)) + 1)
    return best[1]


def average_linkage(x: np.ndarray, cut: float) -> int:
    """Average-linkage clusters under cosine distance ``cut``; clusters under 8 % of the
    windows are noise, not speakers."""
    if len(x) < 3:
        return 1
    labels = fcluster(linkage(x, "average", metric="cosine"), cut, "distance")
    sizes = np.bincount(labels)
    return max(1, int((sizes >= max(2, 0.08 * len(x))).sum()))


def ward(x: np.ndarray, cut: float) -> int:
    """Ward-linkage clusters under a fixed merge cost ``cut``."""
    if len(x) < 3:
        return 1
    return int(fcluster(linkage(x, "ward"), cut, "distance").max())


def gap(e: Embedded, se: float) -> int:
    """The gap statistic's rule with multiplier ``se``, dispersions memoised per set."""
    top = min(speakers.MAX_SPEAKERS, len(e.vectors) - 1)
    if top < 2:
        return 1
    if e.refs is None:
        e.refs = speakers._references(e.vectors, speakers.REFERENCE_SETS, np.random.default_rng(0))
    for k in range(1, top):
        current, following = _gap(e, k), _gap(e, k + 1)
        if current[0] >= following[0] - se * following[1]:
            return k
    return top


def _gap(e: Embedded, k: int) -> tuple[float, float]:
    if k not in e.gaps:
        assert e.refs is not None
        expected = np.array([speakers._log_dispersion(r, k) for r in e.refs])
        spread = float(expected.std() * np.sqrt(1 + 1 / speakers.REFERENCE_SETS))
        e.gaps[k] = (float(expected.mean()) - speakers._log_dispersion(e.vectors, k), spread)
    return e.gaps[k]


def _on_vectors(count: Callable[[np.ndarray, Any], int]) -> Callable[[Embedded, Any], int]:
    return lambda e, parameter: count(e.vectors, parameter)


#: name → (parameter grid, count(conversation, parameter))
METHODS: dict[str, tuple[list[Any], Callable[[Embedded, Any], int]]] = {
    "elbow": ([0.03], _on_vectors(elbow)),
    "elbow-t": ([0.01, 0.015, 0.02, 0.03], _on_vectors(elbow)),
    "eigengap": ([None], _on_vectors(eigengap)),
    "average": ([0.25, 0.3, 0.35], _on_vectors(average_linkage)),
    "ward": ([1.2, 1.4, 1.6], _on_vectors(ward)),
    "gap": ([0.5, 1.0, 1.5, 2.0], gap),
    "gap|elbow": ([0.5, 1.0, 1.5], lambda e, se: max(gap(e, se), elbow(e.vectors, 0.03))),
}
