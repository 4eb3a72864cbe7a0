"""MoRAG's remote-jobs messages and how they map onto this worker's tasks and results.

Pure functions, no I/O beyond reading a downloaded file: the poll answer becomes a
:class:`~morag_worker.protocol.TaskSpec`, a downloaded "file" of a web or YouTube job
becomes ``parameters.url``, and a :class:`~morag_worker.protocol.ResultRequest` becomes
the body of ``PUT /api/v1/remote-jobs/{id}/result``. The table these follow is
docs/morag.md (and ``MORAG-REMOTE-JOBS.md`` in the project's shared notes).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from morag_worker.links.spool import SPOOL_ID
from morag_worker.protocol import (
    InputFile,
    ResultRequest,
    TaskSpec,
    canonical_task_type,
)
from morag_worker.task_params import parameter_problem, parameters_of

PREFIX = "/api/v1/remote-jobs"
#: Largest "file" of a web or YouTube job that is read as a URL: a URL is at most a few
#: kilobytes; anything bigger is not one.
MAX_URL_FILE_BYTES = 64 * 1024


class BadJob(Exception):
    """A job this worker cannot run as given; the message says why (sent to the server
    as the job's ``error_message``)."""


@dataclass(frozen=True)
class PollAnswer:
    job_id: str
    source_file_url: Any
    content_type: Any
    task_options: Any


def read_poll_answer(content: bytes) -> PollAnswer | None:
    """The job in a poll answer; None for "no job" (``job_id`` null: the server sends
    all four fields null). ``ValueError`` when the answer is not a poll answer or its
    job id cannot be used (no result could ever be sent for it)."""
    try:
        raw = json.loads(content)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the poll answer is not JSON: {exc}") from None
    if not isinstance(raw, dict) or "job_id" not in raw:
        raise ValueError(f"the poll answer has no job_id: {str(raw)[:200]}")
    job_id = raw["job_id"]
    if job_id is None:
        return None
    if not isinstance(job_id, str) or not SPOOL_ID.match(job_id):
        raise ValueError(f"the poll answer's job_id {str(job_id)[:200]!r} is not usable")
    return PollAnswer(
        job_id, raw.get("source_file_url"), raw.get("content_type"), raw.get("task_options")
    )


def task_type_of(content_type: Any, served: Collection[str]) -> str:
    """The task type a job's ``content_type`` names; :class:`BadJob` when this worker
    does not run it."""
    if not isinstance(content_type, str) or not content_type.strip():
        raise BadJob(f"the job has no content_type (got {content_type!r})")
    task_type = canonical_task_type(content_type)
    if task_type not in served:
        raise BadJob(
            f"content type {content_type[:100]!r} is not one this worker processes "
            f"(it runs: {', '.join(sorted(served))})"
        )
    return task_type


def download_url(base_url: str, source_file_url: Any) -> str:
    """The absolute URL of the job's file: a path on the server (MoRAG sends
    ``/api/v1/remote-jobs/{id}/download``), or a URL on the same origin. Nothing is
    fetched from another host."""
    if not isinstance(source_file_url, str) or not source_file_url.strip():
        raise BadJob(f"the job has no source_file_url (got {source_file_url!r})")
    url = urljoin(base_url.rstrip("/") + "/", source_file_url.strip())
    base, target = urlsplit(base_url), urlsplit(url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        raise BadJob(
            f"the job's source_file_url {source_file_url[:200]!r} is not on the server "
            f"{base.scheme}://{base.netloc}; only the server's own files are fetched"
        )
    return url


def parameters_from_options(task_type: str, options: Any) -> tuple[dict[str, Any], list[str]]:
    """``task_options`` as this worker's task parameters, checked like any task's
    (``task_params``): a bad value of a parameter this worker knows is a :class:`BadJob`.
    Options it does not know are MoRAG's own (chunking, storage, webhooks…): they are
    left out and returned by name, never passed to a processor."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise BadJob(f"task_options must be an object, got {type(options).__name__}")
    accepted = parameters_of(task_type)
    known = None if accepted is None else {p.name for p in accepted}
    if known is not None:
        # The URL comes from the job's file; embeddings would be made and thrown away
        # (MoRAG receives the content only, and embeds it itself).
        known -= {"url", "embed"}
    params = {k: v for k, v in options.items() if known is None or k in known}
    ignored = sorted(str(k) for k in options if k not in params)
    problem = parameter_problem(task_type, params)
    if problem is not None:
        where, message = problem
        raise BadJob(f"task_options.{where.removeprefix('parameters.')}: {message}")
    return params, ignored


def job_to_task(
    answer: PollAnswer, base_url: str, served: Collection[str], token: str
) -> tuple[TaskSpec, list[str]]:
    """A polled job as a leased task, with the names of the options left out. The
    lease token is this worker's own (the server has none); there is one attempt."""
    task_type = task_type_of(answer.content_type, served)
    url = download_url(base_url, answer.source_file_url)
    params, ignored = parameters_from_options(task_type, answer.task_options)
    spec = TaskSpec(
        task_id=answer.job_id,
        task_type=task_type,
        parameters=params,
        input_files=[InputFile(file_id=answer.job_id, name="", size=0, sha256="", url=url)],
        lease_token=token,
        lease_expires_at=0.0,
        attempt=1,
        max_attempts=1,
    )
    return spec, ignored


def url_from_file(path: Path) -> str:
    """The URL a web or YouTube job's file holds (MoRAG writes it there)."""
    size = path.stat().st_size
    if size > MAX_URL_FILE_BYTES:
        raise BadJob(
            f"the job's file has {size} bytes; a web or youtube job's file holds one URL "
            f"(at most {MAX_URL_FILE_BYTES} bytes)"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise BadJob("the job's file is not UTF-8 text; it should hold one http(s) URL") from None
    scheme = urlsplit(text).scheme.lower() if text else ""
    if not text or any(c.isspace() for c in text) or scheme not in ("http", "https"):
        raise BadJob(f"the job's file does not hold one http(s) URL: {text[:200]!r}")
    return text


def with_url(spec: TaskSpec, url: str) -> TaskSpec:
    """The task with its URL as ``parameters.url`` and no input files."""
    params = {**spec.parameters, "url": url}
    problem = parameter_problem(spec.task_type, params)
    if problem is not None:
        raise BadJob(f"{problem[0]}: {problem[1]}")
    return spec.model_copy(update={"parameters": params, "input_files": []})


def result_body(body: ResultRequest) -> dict[str, Any]:
    """The ``PUT …/result`` body: ``{success, content, metadata, processing_time}``, or
    ``{success: false, error_message}``. ``content`` is the result's Markdown (for
    speech, the speaker-labelled transcript), which MoRAG chunks and embeds itself;
    ``processing_time`` is download plus processing, as MoRAG's own worker measured it."""
    if body.status == "completed" and body.result is not None:
        seconds = body.timings.get("download_s", 0.0) + body.timings.get("process_s", 0.0)
        return {
            "success": True,
            "content": body.result.content,
            "metadata": body.result.metadata,
            "processing_time": round(seconds, 3),
        }
    error = body.error
    message = f"{error.type}: {error.message}" if error is not None else "failed"
    return {"success": False, "error_message": message}


def result_path(job_id: str) -> str:
    return f"{PREFIX}/{quote(job_id, safe='')}/result"


def poll_path(worker_id: str, content_types: list[str]) -> str:
    """The poll query; ``max_jobs`` is always 1: MoRAG claims ``max_jobs`` jobs but
    answers with the first only, stranding the others."""
    query = (
        f"worker_id={quote(worker_id, safe='')}"
        f"&content_types={quote(','.join(content_types), safe=',')}&max_jobs=1"
    )
    return f"{PREFIX}/poll?{query}"
