"""Speaker clustering of window embeddings, and the speaker count when none is given.

:func:`cluster` labels unit embeddings with spherical k-means; without a count it first
estimates one (:func:`estimate_count`) with the gap statistic (Tibshirani, Walther and
Hastie, 2001): the smallest k whose clustering tightens the windows markedly more than the
same k tightens windows drawn from one Gaussian with the data's own mean and covariance
(the "one voice" reference), i.e. the smallest k with
``gap(k) ≥ gap(k+1) − GAP_SE · s(k+1)``. That rule can stop at one speaker when two
clusters fit no better than one but three fit much better; the count is therefore never
below the elbow count (the last k whose extra cluster raised the mean window-to-centroid
similarity by ``ELBOW_GAIN``), which was the whole estimate before and never counted too
many voices on 126 development conversations (it merges similar ones instead).

Why the gap statistic: how much one more cluster tightens the windows depends on how many
windows there are, so a fixed cut cannot hold for both 30 s and 10 min. Measured with
``bench/speakers.py`` on generated conversations of 1-6 voices (figures in
``docs/speech.md``): the elbow alone found two voices where there were three or more; a
fixed Ward-linkage cut, the best on short conversations, split 3-minute ones into 5-10
"speakers"; eigengap on the affinity matrix (NME-SC) and average-linkage cuts were less
accurate on the development set.
"""

from __future__ import annotations

import numpy as np

#: Most speakers the estimate considers: meetings rarely have more active voices, and
#: each extra k costs one more clustering of the windows and of every reference set.
MAX_SPEAKERS = 10
#: Reference data sets drawn per recording: the spread of their dispersions (s(k)) settles
#: with about ten; more costs time without changing the counts on the development set.
REFERENCE_SETS = 10
#: Multiple of s(k+1) in the stopping rule: Tibshirani et al.'s 1, which bench/speakers.py
#: also chose from 0.5, 1, 1.5 and 2 on its development set (mean of the accuracy on short
#: and on 3-minute conversations: 0.5 merged fewer similar voices in short talks, 1 split
#: fewer long ones).
GAP_SE = 1.0
#: k-means starts per clustering inside the gap statistic (the final labels use 10): the
#: dispersion of the best of four differs little from the best of ten.
ESTIMATE_RESTARTS = 4
#: The elbow floor: a second real voice raised the mean window-to-centroid similarity by
#: 0.06 on the conversation fixture, splitting one voice by 0.01 (the former estimate).
ELBOW_GAIN = 0.03


def kmeans(
    x: np.ndarray, k: int, restarts: int = 10, iterations: int = 20
) -> tuple[np.ndarray, float]:
    """Spherical k-means on unit vectors, k-means++ seeding, best of ``restarts`` runs.

    Returns the labels and the mean cosine similarity of each vector to its centroid.
    The seed is fixed so a task's result does not change between attempts. Chosen over
    average-linkage clustering, which cut single noisy windows off as "speakers" (53 %
    right on the conversation fixture; k-means 95 %); restarts because one
    farthest-point start stuck in the same trap on the AAC copy of that fixture.
    """
    rng = np.random.default_rng(0)
    best_labels, best_score = np.zeros(len(x), dtype=int), -2.0
    for _ in range(restarts if k > 1 else 1):
        seeds = [int(rng.integers(len(x)))]
        while len(seeds) < k:
            distance = np.clip(1.0 - (x @ x[seeds].T).max(axis=1), 0.0, None) ** 2
            total = distance.sum()
            seeds.append(int(rng.choice(len(x), p=distance / total)) if total > 0 else len(seeds))
        labels, score = _refine(x, x[seeds].copy(), iterations)
        if score > best_score + 1e-9:
            best_labels, best_score = labels, score
    return best_labels, best_score


def _refine(x: np.ndarray, centroids: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
    labels = np.zeros(len(x), dtype=int)
    for _ in range(iterations):
        labels = np.argmax(x @ centroids.T, axis=1)
        for j in range(len(centroids)):
            if (labels == j).any():
                centroids[j] = x[labels == j].mean(axis=0)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    labels = np.argmax(x @ centroids.T, axis=1)
    return labels, float(np.mean(np.sum(x * centroids[labels], axis=1)))


def _log_dispersion(x: np.ndarray, k: int) -> float:
    """log of the summed cosine distance of each vector to its k-means centroid."""
    _labels, score = kmeans(x, k, restarts=ESTIMATE_RESTARTS)
    return float(np.log(max(1e-9, len(x) * (1.0 - score))))


def _references(x: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` unit-vector sets drawn from one Gaussian with the mean and covariance of
    ``x`` (sampled in its principal axes: the covariance has rank < len(x))."""
    mean = x.mean(axis=0)
    _u, singular, axes = np.linalg.svd(x - mean, full_matrices=False)
    scale = singular / np.sqrt(max(1, len(x) - 1))
    sets = []
    for _ in range(count):
        drawn = mean + (rng.normal(size=(len(x), len(scale))) * scale) @ axes
        sets.append(drawn / np.linalg.norm(drawn, axis=1, keepdims=True))
    return sets


def estimate_count(x: np.ndarray, max_speakers: int = MAX_SPEAKERS) -> int:
    """Number of speakers among unit window embeddings ``x``: the gap statistic's count,
    raised to the elbow count when that is higher (see the module docstring)."""
    top = min(max_speakers, len(x) - 1)
    if top < 2:
        return 1
    return max(_gap_count(x, top), _elbow_count(x, top))


def _gap_count(x: np.ndarray, top: int) -> int:
    """Dispersions are computed one k at a time and the search stops at the first k the
    rule accepts, so a conversation of two voices never clusters for ten."""
    references = _references(x, REFERENCE_SETS, np.random.default_rng(0))

    def gap(k: int) -> tuple[float, float]:
        expected = np.array([_log_dispersion(r, k) for r in references])
        spread = float(expected.std() * np.sqrt(1 + 1 / REFERENCE_SETS))
        return float(expected.mean()) - _log_dispersion(x, k), spread

    current, _spread = gap(1)
    for k in range(1, top):
        following, spread = gap(k + 1)
        if current >= following - GAP_SE * spread:
            return k
        current = following
    return top


def _elbow_count(x: np.ndarray, top: int) -> int:
    _labels, score = kmeans(x, 1)
    for k in range(2, top + 1):
        _labels, next_score = kmeans(x, k)
        if next_score - score < ELBOW_GAIN:
            return k - 1
        score = next_score
    return top


def cluster(embeddings: np.ndarray, num_speakers: int | None) -> np.ndarray:
    """Cluster labels 0..k-1; k is ``num_speakers`` or :func:`estimate_count`."""
    k = num_speakers or estimate_count(embeddings)
    return kmeans(embeddings, min(k, len(embeddings)))[0]
