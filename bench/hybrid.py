"""Does BM25 fused with dense retrieval find paraphrased queries' chunks better?

    OMP_NUM_THREADS=1 python bench/hybrid.py [--entities 300] [--model all-MiniLM-L6-v2]

Generated documents describe fictional places (a bakery, a ferry, a sawmill …) in two
voices; every chunk is one place. Queries come in three kinds, none copying a chunk's
wording: *described* (the kind of place, its town and what it mostly makes, each in
other words: "which bread shop in Torvik mainly sells dark loaves"), *named* (the
place's rare name and a paraphrased question: "when did Varnholt open"), and *mixed*
(the town and a paraphrased product, no kind). Each query has exactly one right chunk.
Scores per method: recall@1, recall@5 and MRR@10 for dense (the server's embedding
model, cosine), BM25 (k1 1.2, b 0.75) and their reciprocal-rank fusion (RRF, k 60: what
Qdrant's hybrid queries use). The baseline is dense retrieval, what search does today.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from morag_worker.models.embeddings import Embedder

#: Kind of place -> (words a query uses instead, products -> their paraphrases).
KINDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "bakery": (
        ["bread shop", "baker's"],
        {
            "rye bread": "dark loaves",
            "croissants": "flaky French pastries",
            "wedding cakes": "tiered celebration sponges",
        },
    ),
    "ferry service": (
        ["boat crossing", "water shuttle"],
        {
            "car transport": "carrying vehicles over the water",
            "island tours": "sightseeing trips around the isles",
            "freight": "shipping cargo",
        },
    ),
    "sawmill": (
        ["timber mill", "lumber yard"],
        {
            "pine planks": "softwood boards",
            "oak beams": "hardwood rafters",
            "wood pellets": "compressed fuel for stoves",
        },
    ),
    "brewery": (
        ["beer maker", "ale house"],
        {
            "pale ale": "light hoppy beer",
            "stout": "dark roasted beer",
            "cider": "fermented apple drink",
        },
    ),
    "dairy": (
        ["milk farm", "creamery"],
        {
            "goat cheese": "cheese from goats",
            "butter": "churned cream spread",
            "yoghurt": "cultured milk pots",
        },
    ),
    "pottery": (
        ["ceramics workshop", "clay studio"],
        {
            "glazed bowls": "shiny fired dishes",
            "tiles": "ceramic wall squares",
            "vases": "flower holders",
        },
    ),
}
TOWNS = [
    "Torvik",
    "Ellesmere",
    "Quarndon",
    "Halvard",
    "Brisco",
    "Oakhampton",
    "Lindqvist",
    "Marrow Bay",
    "Saltcombe",
    "Drummore",
    "Kelso Ridge",
    "Fenwick",
]
_SYLLABLES = [
    "var",
    "nholt",
    "bre",
    "ck",
    "ost",
    "fel",
    "dan",
    "mir",
    "ska",
    "lun",
    "tor",
    "vik",
    "hal",
    "gren",
    "wyn",
    "dell",
    "ash",
    "bourne",
    "quill",
    "stead",
]
VOICES = [
    "{name} is a {kind} in {town}. It was founded in {year} and employs {staff} people. "
    "Most of its trade is {product}, and locals say the queue starts before eight.",
    "Located in {town}, the {kind} known as {name} opened its doors in {year}; today "
    "{staff} staff work there, mostly on {product}. Visitors often stop on their way to the coast.",
]
QUESTIONS = {
    "described": "which {kind_syn} in {town} mainly deals in {product_syn}",
    "named": "when did {name} first open for business",
    "mixed": "who in {town} is known for {product_syn}",
}


def corpus(entities: int, seed: int) -> tuple[list[str], list[tuple[str, str, int]]]:
    """Chunks and queries (kind, text, index of the right chunk)."""
    rng = random.Random(seed)
    combos = [(k, t, p) for k in KINDS for t in TOWNS for p in KINDS[k][1]]
    rng.shuffle(combos)
    chunks: list[str] = []
    queries: list[tuple[str, str, int]] = []
    names: set[str] = set()
    for index, (kind, town, product) in enumerate(combos[:entities]):
        name = ""
        while not name or name in names:
            name = "".join(rng.choice(_SYLLABLES) for _ in range(3)).capitalize()
        names.add(name)
        fields = {
            "name": name,
            "kind": kind,
            "town": town,
            "product": product,
            "year": rng.randint(1850, 2015),
            "staff": rng.randint(3, 90),
        }
        chunks.append(rng.choice(VOICES).format(**fields))
        synonyms, products = KINDS[kind]
        fields.update(kind_syn=rng.choice(synonyms), product_syn=products[product])
        for kind_of_query, template in QUESTIONS.items():
            if (
                kind_of_query == "mixed"
                and sum(
                    1
                    for k, t, p in combos[:entities]
                    if t == town and KINDS[k][1].get(p) == products[product]
                )
                > 1
            ):
                continue  # would have two right answers
            queries.append((kind_of_query, template.format(**fields), index))
    return chunks, queries


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class Bm25:
    def __init__(self, docs: list[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.docs = [Counter(_tokens(d)) for d in docs]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = sum(self.lengths) / len(self.lengths)
        frequency = Counter(t for d in self.docs for t in d)
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}
        self.k1, self.b = k1, b

    def rank(self, query: str) -> list[int]:
        terms = [t for t in _tokens(query) if t in self.idf]
        scores = []
        for doc, length in zip(self.docs, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / self.avg)
            scores.append(
                sum(
                    self.idf[t] * doc[t] * (self.k1 + 1) / (doc[t] + norm)
                    for t in terms
                    if t in doc
                )
            )
        return sorted(range(len(scores)), key=lambda i: -scores[i])


def rrf(*rankings: list[int], k: int = 60, depth: int = 100) -> list[int]:
    score: Counter[int] = Counter()
    for ranking in rankings:
        for rank, doc in enumerate(ranking[:depth]):
            score[doc] += 1.0 / (k + rank + 1)
    return [doc for doc, _ in score.most_common()]


def scores(rankings: list[list[int]], truth: list[int]) -> tuple[float, float, float]:
    r1 = np.mean([r[0] == t for r, t in zip(rankings, truth, strict=True)])
    r5 = np.mean([t in r[:5] for r, t in zip(rankings, truth, strict=True)])
    mrr = np.mean(
        [
            1 / (r[:10].index(t) + 1) if t in r[:10] else 0.0
            for r, t in zip(rankings, truth, strict=True)
        ]
    )
    return float(r1), float(r5), float(mrr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--seeds", default="1,2,3", help="corpora to average over")
    args = parser.parse_args()
    embedder = Embedder(args.model)
    print(
        f"{'queries':<10} {'method':<7} {'recall@1':>9} {'recall@5':>9} "
        f"{'MRR@10':>7} {'vs dense':>9}"
    )
    totals: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        chunks, queries = corpus(args.entities, seed)
        doc_vectors = np.asarray(embedder.embed(chunks))
        bm25 = Bm25(chunks)
        for kind in ("described", "named", "mixed", "all"):
            chosen = [q for q in queries if kind in ("all", q[0])]
            query_vectors = np.asarray(embedder.embed([q[1] for q in chosen]))
            dense = [list(np.argsort(-(doc_vectors @ v))) for v in query_vectors]
            lexical = [bm25.rank(q[1]) for q in chosen]
            fused = [rrf(d, s) for d, s in zip(dense, lexical, strict=True)]
            truth = [q[2] for q in chosen]
            for method, ranking in (("dense", dense), ("bm25", lexical), ("hybrid", fused)):
                totals.setdefault((kind, method), []).append(scores(ranking, truth))
    for kind in ("described", "named", "mixed", "all"):
        base = np.mean(totals[(kind, "dense")], axis=0)
        for method in ("dense", "bm25", "hybrid"):
            r1, r5, mrr = np.mean(totals[(kind, method)], axis=0)
            print(
                f"{kind:<10} {method:<7} {r1:>9.3f} {r5:>9.3f} {mrr:>7.3f} {mrr / base[2]:>8.2f}x"
            )


if __name__ == "__main__":
    main()
