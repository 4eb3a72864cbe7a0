"""Speaker counts and turn edges on generated conversations; the method is chosen on one
set and measured on another.

    OMP_NUM_THREADS=1 python bench/speakers.py [--part count edges long] [--seeds 10]

Conversations come from ``tests/fixtures/gen_conversations.py`` (espeak-ng + sox, seeded;
nothing is stored). Voices of the development set come from one pool of espeak-ng variants,
those of the held-out set from another, with other seeds.

count: 1-6 voices x three similarities x ``--seeds`` short conversations (5 + 3 turns
  per voice) plus one 50-turn (3-4 min) conversation per cell. Every method's parameter is
  chosen on the development set by the mean of its accuracy on short and on long
  conversations; the table gives the held-out accuracy of the count by voices and
  similarity, and the speech time given the right speaker (best label mapping) with that
  method's labels. ``elbow`` is the method before this change (the baseline);
  ``gap|elbow`` is what ships (the gap statistic, never below the elbow's count) and
  ``shipped`` runs ``speakers.estimate_count`` itself; ``given`` clusters with the true
  count (the ceiling of the embeddings).
edges: 2-3 voice conversations (held-out pool) transcribed once by Whisper tiny.en; words
  given the right speaker (all, and first/last words of turns) and zero-length segments,
  before (old assignment, unrefined turns) and after; the diarizer's own speech-time
  accuracy is the raw model's figure the words should keep.
long: one 10-minute conversation through the audio pipeline: real-time factor of Whisper
  and of the whole task, monotonic segments, coverage, WER and word speakers.

About 40 minutes on two shared CPU cores with the default sizes. Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "unit"), str(ROOT / "tests" / "fixtures"), str(ROOT)]

import gen_conversations as gen  # noqa: E402
import numpy as np  # noqa: E402
from speakers_methods import METHODS, Embedded, embed_set, labels_to_turns  # noqa: E402
from speech_metrics import speaker_accuracy  # noqa: E402

from morag_worker.processors import speakers  # noqa: E402


def conversation_set(pool: str, seeds: range, long_seed: int) -> list[gen.Conversation]:
    out = []
    for k in range(1, 7):
        for similarity in gen.SIMILARITIES:
            out += [gen.conversation(s, k, similarity, pool=pool) for s in seeds]
            out.append(gen.conversation(long_seed, k, similarity, pool=pool, turns=50))
    return out


def choose(dev: list[Embedded]) -> dict[str, Any]:
    """Each method's parameter with the best development score: the mean of its count
    accuracy on short and on long conversations, so that a cut which only suits half-minute
    talks (the fixed Ward cut splits every 3-minute one) cannot win on their number."""
    chosen, best = {}, {}
    print("Development set: count accuracy per parameter, short / long conversations")
    for name, (grid, count) in METHODS.items():
        scores = []
        for p in grid:
            short = np.mean([count(e, p) == e.k for e in dev if not e.long])
            long = np.mean([count(e, p) == e.k for e in dev if e.long])
            scores.append(((short + long) / 2, p, short, long))
        top = max(scores, key=lambda score: score[0])
        chosen[name], best[name] = top[1], top[0]
        print(f"  {name:<9} " + "  ".join(f"{p}: {s:.2f}/{lg:.2f}" for _m, p, s, lg in scores))
    winner = max(best.values())
    print("Best on the development set: " + ", ".join(n for n, v in best.items() if v == winner))
    return chosen


def count_table(test: list[Embedded], chosen: dict[str, Any]) -> None:
    counters: dict[str, Callable[[Embedded], int]] = {
        name: (lambda e, name=name: METHODS[name][1](e, chosen[name])) for name in chosen
    }
    counters["shipped"] = lambda e: speakers.estimate_count(e.vectors)
    counters["given"] = lambda e: e.k
    head = ["k=1", "k=2", "k=3", "k=4", "k=5", "k=6", "distinct", "same-sex", "similar", "long"]
    print(f"\nHeld-out set, {len(test)} conversations: share with the right count; 'time' is")
    print("the speech time given the right speaker with that method's labels")
    print(f"{'method':<9} {'param':>6} " + " ".join(f"{h:>8}" for h in head) + "    all   time")
    for name, counter in counters.items():
        cells: dict[str, list[bool]] = defaultdict(list)
        right_time = []
        for e in test:
            k = counter(e)
            labels = speakers.kmeans(e.vectors, min(k, len(e.vectors)))[0]
            right_time.append(speaker_accuracy(e.truth, labels_to_turns(e, labels)))
            for key in (f"k={e.k}", "long" if e.long else e.similarity, "all"):
                cells[key].append(k == e.k)
        param = chosen.get(name, "-")
        row = " ".join(f"{np.mean(cells[h]):8.2f}" for h in head)
        print(
            f"{name:<9} {param!s:>6} {row} {np.mean(cells['all']):6.3f} {np.mean(right_time):6.3f}"
        )


def part_count(seeds: int) -> None:
    started = time.perf_counter()
    dev = embed_set(conversation_set("dev", range(seeds), 500))
    test = embed_set(conversation_set("test", range(1000, 1000 + seeds), 1500))
    print(
        f"\nSpeaker count: {len(dev)} development, {len(test)} held-out conversations "
        f"({time.perf_counter() - started:.0f} s to generate and embed)"
    )
    chosen = choose(dev)
    count_table(test, chosen)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give a whole number of at least 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parts = ["count", "edges", "long"]
    parser.add_argument("--part", nargs="+", default=parts, choices=parts)
    parser.add_argument("--seeds", type=positive, default=10, help="short talks per cell")
    parser.add_argument("--edges", type=positive, default=16, help="talks for the edges part")
    args = parser.parse_args()
    if "count" in args.part:
        part_count(args.seeds)
    if "edges" in args.part:
        from speakers_edges import part_edges

        part_edges(args.edges)
    if "long" in args.part:
        from speakers_edges import part_long

        part_long()


if __name__ == "__main__":
    main()
