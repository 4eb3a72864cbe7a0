"""morag demo: the whole system on this machine, on the bundled samples.

Starts a server on the embedded defaults (SQLite, local files, embedded Qdrant) in a
temporary data dir, creates a user key and a worker key, starts a supervisor with CPU
children, submits every bundled sample (and a web page and a video page served locally),
follows them, prints a table (time queued and time processing apart, the first line of
each result's content), runs a search, and shuts everything down with SIGTERM as an
operator would.
Exits 0 only if every sample completed.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from morag_worker.cli.api import Api, ApiFailure
from morag_worker.cli.demo_report import Submitted, follow, report
from morag_worker.cli.keys import write_secret
from morag_worker.cli.local import free_port, start_server, start_supervisor

#: Task type by file extension for the bundled samples.
SAMPLE_TYPES = {
    ".txt": "document",
    ".md": "document",
    ".html": "document",
    ".docx": "document",
    ".pdf": "document",
    ".pptx": "document",
    ".xlsx": "document",
    ".eml": "document",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".wav": "audio",
    ".mp3": "audio",
    ".ogg": "audio",
    ".flac": "audio",
    ".mp4": "video",
    ".mkv": "video",
    ".webm": "video",
}
#: Two CPU children: documents and media overlap; private URLs: the demo's pages are local.
WORKER_ARGS = ("--cpu-procs", "2", "--allow-private-urls")
#: How long the demo waits for all samples (audio on one CPU thread is the slow part).
DEMO_TIMEOUT_S = 600.0


def sample_files() -> list[Path]:
    root = Path(str(resources.files("morag_worker").joinpath("samples")))
    return sorted(p for p in root.iterdir() if p.suffix.lower() in SAMPLE_TYPES)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve_pages(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def _submit_all(api: Api, pages_url: str) -> list[Submitted]:
    submitted = []
    for path in sample_files():
        task_type = SAMPLE_TYPES[path.suffix.lower()]
        task_id = api.submit_file(path, task_type, {})
        submitted.append(Submitted(path.name, task_type, task_id, path.name))
    for name, task_type, page in (
        ("lighthouse.html (web)", "web", "lighthouse.html"),
        ("meeting page (youtube)", "youtube", "pages/meeting.html"),
    ):
        url = f"{pages_url}/{page}"
        body = {"task_type": task_type, "parameters": {"url": url}}
        task_id = api.post_json("/api/v1/tasks", body)["task_id"]
        submitted.append(Submitted(name, task_type, task_id, url))
    return submitted


def _search(api: Api) -> None:
    query = "who relied on the lighthouse beam in storms"
    try:
        hits = api.post_json("/api/v1/search", {"query": query, "limit": 3})["hits"]
    except ApiFailure as exc:
        print(f"\nsearch unavailable: {exc}")
        return
    print(f"\nsearch: {query!r}")
    for rank, hit in enumerate(hits, 1):
        print(
            f"  {rank}. {hit['score']:.3f}  {hit['source'] or hit['task_id']}: "
            f"{' '.join(hit['text'].split())[:70]}"
        )


def _wait_indexed(api: Api, task_ids: list[str], timeout_s: float = 120.0) -> None:
    """Indexing runs after completion, off the request path: wait until it caught up."""
    deadline = time.monotonic() + timeout_s
    for task_id in task_ids:
        while api.get(f"/api/v1/tasks/{task_id}").get("indexed_at") is None:
            if time.monotonic() > deadline:
                return
            time.sleep(0.25)


def run_demo(keep: bool = False) -> int:
    work = Path(tempfile.mkdtemp(prefix="morag-demo-"))
    port, health_port = free_port(), free_port()
    server_url = f"http://127.0.0.1:{port}"
    print(f"demo data dir: {work}")
    server = start_server(work / "server", port)
    supervisor = None
    httpd, pages_url = _serve_pages(Path(str(resources.files("morag_worker").joinpath("samples"))))
    try:
        admin = Api(server_url, (work / "server" / "admin.key").read_text().strip())
        user_key = admin.post_json("/api/v1/keys", {"user_id": "demo", "role": "user"})["key"]
        worker_key = admin.post_json("/api/v1/keys", {"user_id": "demo", "role": "worker"})["key"]
        write_secret(work / "worker.key", worker_key, force=False)
        supervisor = start_supervisor(
            server_url, work / "worker.key", work / "supervisor.log", health_port, *WORKER_ARGS
        )
        api = Api(server_url, user_key)
        submitted = _submit_all(api, pages_url)
        print(f"submitted {len(submitted)} tasks; waiting for them:", flush=True)
        infos = follow(api, submitted, DEMO_TIMEOUT_S, sys.stderr)
        ok = report(api, submitted, infos)
        _wait_indexed(api, [s.task_id for s in submitted])
        _search(api)
    finally:
        httpd.shutdown()
        stopped: dict[str, Any] = {}
        if supervisor is not None:
            stopped["supervisor"] = supervisor.stop(60)
        stopped["server"] = server.stop(30)
        print(f"\nstopped: {', '.join(f'{k} exit {v}' for k, v in stopped.items())}")
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print("demo " + ("passed: every sample completed" if ok else "FAILED: see the table"))
    return 0 if ok else 1
