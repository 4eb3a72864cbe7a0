"""What hostile documents cost with the document limits, and without the pre-checks.

    OMP_NUM_THREADS=1 python bench/doc_limits.py [--baseline-timeout-s 30]

Each file is generated (``tests/fixtures/hostile_documents.py``) and converted by the
document processor in a fresh process, so that its peak resident memory is its own;
docling is imported before the clock starts. Two runs per file:

- ``limits``: the default settings (XML, element and page caps refuse before converting);
- ``baseline``: those caps lifted, and only the conversion deadline left, set to
  ``--baseline-timeout-s`` so that the run ends at all (without it the DOCX bomb and
  the 20,000-page PDF run for many minutes; the issue measured 230 s and 2.7 GiB).

The table shows the outcome, seconds and growth of peak RSS, and the time ratio of
baseline to limits. A real document is converted too, with the time the pre-checks
take, to show what they cost a file that passes. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

LIFTED = {
    "doc_max_xml_part_bytes": 2**40,
    "doc_max_xml_bytes": 2**40,
    "doc_max_elements": 2**40,
    "doc_max_pages": 2**40,
    "doc_max_zip_entries": 2**30,
    "doc_max_memory_bytes": 64 * 2**30,
}


def _files(directory: Path) -> dict[str, Path]:
    import hostile_documents as hostile

    return {
        "DOCX bomb, 63 MB of XML": hostile.docx_bomb(directory / "bomb.docx", 63_000_000),
        "PDF, 20,000 empty pages": hostile.pdf_pages(directory / "empty.pdf", 20_000),
        "XLSX, 1,000,000 cells": hostile.xlsx_cells(directory / "cells.xlsx", 100_000, 10),
        "PPTX, 3,000 slides": hostile.pptx_slides(directory / "deck.pptx", 3_000),
        "sample.docx (real)": ROOT / "tests" / "fixtures" / "documents" / "sample.docx",
    }


def convert_one(path: Path, overrides: dict[str, float]) -> dict[str, object]:
    """Convert ``path`` in this process; outcome, seconds and RSS growth."""
    from morag_worker.errors import TaskFailure
    from morag_worker.models.cache import ModelCache
    from morag_worker.processors.base import TaskContext
    from morag_worker.processors.document import DocumentProcessor
    from morag_worker.processors.settings import ProcessorSettings

    processor = DocumentProcessor()
    processor._docling.prepare()  # imports are the child's cost, not the document's
    settings = ProcessorSettings(**overrides)  # type: ignore[arg-type]
    ctx = TaskContext(
        "b", "document", {}, [path], [path.name], path.parent, "cpu", ModelCache(), settings
    )
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        processor.process(ctx)
        outcome = "converted"
    except TaskFailure as exc:
        outcome = "refused: " + exc.message.split(": ", 1)[1][:60]
    seconds = time.perf_counter() - started
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    return {"outcome": outcome, "seconds": seconds, "grown_mib": grown / 1024}


def _run(path: Path, overrides: dict[str, float]) -> dict[str, object]:
    command = [sys.executable, __file__, "--one", str(path), "--settings", json.dumps(overrides)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _check_seconds(path: Path) -> float:
    """Seconds the pre-checks take on a file that passes them (median of 5)."""
    from morag_worker.processors.doc_detect import check_zip
    from morag_worker.processors.doc_limits import check_office
    from morag_worker.processors.settings import ProcessorSettings

    settings, times = ProcessorSettings(), []
    for _ in range(5):
        started = time.perf_counter()
        with check_zip(path, max_unzipped_bytes=2**30, max_entries=10_000) as archive:
            check_office(archive, "docx", settings)
        times.append(time.perf_counter() - started)
    return sorted(times)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-timeout-s", type=float, default=30.0)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(convert_one(args.one, json.loads(args.settings))))
        return
    baseline = {**LIFTED, "doc_convert_timeout_s": args.baseline_timeout_s}
    print(f"{'input':26} {'run':9} {'seconds':>8} {'RSS +MiB':>9}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in _files(Path(tmp)).items():
            size = f"{path.stat().st_size / 1024:,.0f} KB"
            rows = {"limits": _run(path, {}), "baseline": _run(path, baseline)}
            for run, row in rows.items():
                print(
                    f"{label[:26]:26} {run:9} {row['seconds']:8.2f} {row['grown_mib']:9.0f}  "
                    f"{row['outcome']}"
                )
            ratio = float(rows["baseline"]["seconds"]) / max(float(rows["limits"]["seconds"]), 1e-3)  # type: ignore[arg-type]
            print(f"{'':26} {'ratio':9} {ratio:8.0f}×  (file {size})")
        sample = ROOT / "tests" / "fixtures" / "documents" / "sample.docx"
        print(f"pre-checks on sample.docx: {_check_seconds(sample) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
