"""Embedding throughput on this host: chunks per second at batch size 1 and 32.

    OMP_NUM_THREADS=1 python bench/embed.py [--model all-MiniLM-L6-v2] [--device cpu]

Two chunk shapes: "short" (one sentence, ~15 words, like a search query or a caption)
and "chunk" (~150 words, the default chunk size after sub-word tokenisation fills most
of MiniLM's 256-token window). Prints chunks/s and the batch-32 / batch-1 ratio; the
baseline is batch size 1, what a naive one-call-per-chunk loop gets. Takes well under a
minute on two CPU cores. Nothing here asserts a time: read the table.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morag_worker.models.embeddings import Embedder

#: Texts per measurement: enough for two full batches of 32, few enough that batch
#: size 1 on long chunks stays within a few seconds on one core.
TEXTS = 64
#: Vocabulary of the generated texts: words of this domain plus function words, so that
#: tokenisation (which sets the cost) looks like English prose.
_VOCABULARY = (
    "model worker queue lease vector search document page table heading audio speaker "
    "transcript chunk embedding server cluster retry result token budget "
    "the a of to and in is for on with that by from as at"
)


def _texts(words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocabulary = _VOCABULARY.split()
    return [" ".join(rng.choice(vocabulary) for _ in range(words)) + "." for _ in range(TEXTS)]


def _rate(embedder: Embedder, texts: list[str], batch_size: int) -> float:
    embedder.batch_size = batch_size
    embedder.embed(texts[:2])  # warm-up: first calls allocate and pick kernels
    started = time.perf_counter()
    if batch_size == 1:
        for text in texts:
            embedder.embed([text])
    else:
        embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    started = time.perf_counter()
    embedder = Embedder(args.model, device=args.device).load()
    loaded_s = time.perf_counter() - started
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"{embedder.model_id} on {embedder.device}, dimension {embedder.dimension}")
    print(f"loaded in {loaded_s:.1f} s; OMP_NUM_THREADS={threads}")
    print(f"{'shape':<7} {'batch 1':>10} {'batch 32':>10} {'ratio':>7}   (chunks/s)")
    for shape, words in (("short", 15), ("chunk", 150)):
        texts = _texts(words, seed=words)
        one = _rate(embedder, texts, 1)
        many = _rate(embedder, texts, 32)
        print(f"{shape:<7} {one:>10.1f} {many:>10.1f} {many / one:>6.2f}x")


if __name__ == "__main__":
    main()
