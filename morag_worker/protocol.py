"""The wire schemas of protocol v1, shared by the server, the supervisor and the CLI.

Every body on ``/api/v1`` is one of these pydantic models. Times are Unix epoch
seconds (float) so that both halves compare them without time-zone parsing; the
server's clock is the one that counts for leases. ``docs/protocol.md`` explains the
semantics (leases, fencing tokens, long-poll, retries, cancellation, isolation).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

API_PREFIX = "/api/v1"
#: The worker protocol's version, sent at registration. It changes only with an
#: incompatible change to the worker calls; additive fields do not bump it. Servers accept
#: a range of versions (docs/protocol.md, Compatibility), so workers and replicas can be
#: upgraded one at a time.
PROTOCOL_VERSION = 1

#: Built-in task types. Aliases from the seed (``process_audio`` …) map onto them.
TASK_TYPES: tuple[str, ...] = ("audio", "video", "document", "image", "web", "youtube", "noop")
#: Types whose input is a URL rather than uploaded files.
URL_TASK_TYPES: frozenset[str] = frozenset({"web", "youtube"})
TASK_TYPE_ALIASES: dict[str, str] = {
    "process_audio": "audio",
    "process_video": "video",
    "process_document": "document",
    "process_image": "image",
    "process_web": "web",
    "process_url": "web",
    "process_youtube": "youtube",
}


def canonical_task_type(name: str) -> str:
    """Map a seed alias (``process_audio``) onto its task type; other names pass through."""
    name = name.strip().lower()
    return TASK_TYPE_ALIASES.get(name, name)


class _Model(BaseModel):
    # Unknown fields are refused so that a typo in a request is an error, not a no-op.
    model_config = ConfigDict(extra="forbid")


class _Reply(_Model):
    """A reply a worker reads. Fields a newer server adds are ignored, not refused: the
    compatibility policy (docs/protocol.md) lets servers add reply fields without a
    protocol version bump, and this release's workers must keep reading them."""

    model_config = ConfigDict(extra="ignore")


class TaskState(str, Enum):
    queued = "queued"
    leased = "leased"
    completed = "completed"
    failed = "failed"
    dead = "dead"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.completed, TaskState.failed, TaskState.dead, TaskState.cancelled)


class Role(str, Enum):
    admin = "admin"
    user = "user"
    worker = "worker"


# ---- errors -------------------------------------------------------------------------------


class ErrorDetail(_Model):
    code: str = Field(description="machine-readable word: not_found, lease_lost, invalid …")
    message: str = Field(description="what was wrong and what to do")
    field: str | None = Field(default=None, description="the request field at fault, if any")
    details: dict[str, Any] | None = Field(
        default=None, description="structured facts about the error, where a program needs them"
    )


class ErrorBody(_Model):
    error: ErrorDetail


#: Longest error message a worker sends; longer ones are cut (``TaskError.of``).
MAX_ERROR_MESSAGE_CHARS = 8192


class TaskError(_Model):
    """Why a task attempt failed. ``retryable`` decides whether the server tries again."""

    type: str = Field(min_length=1, max_length=64)
    message: str = Field(max_length=MAX_ERROR_MESSAGE_CHARS)
    retryable: bool = True

    @classmethod
    def of(cls, type: str, message: str, retryable: bool) -> TaskError:
        """An error built from text of any length or shape: the type is reduced to a
        short word and a long message is cut, saying how much was left out. What a task
        carries (a URL, a file name, a processor's exception) must never make the error
        itself invalid."""
        word = "".join(c if c.isalnum() or c in "_-." else "_" for c in str(type))[:64]
        text = str(message)
        if len(text) > MAX_ERROR_MESSAGE_CHARS:
            cut = len(text) - (MAX_ERROR_MESSAGE_CHARS - 40)
            text = f"{text[: MAX_ERROR_MESSAGE_CHARS - 40]}… ({cut} characters cut)"
        return cls(type=word or "error", message=text, retryable=bool(retryable))


# ---- results ------------------------------------------------------------------------------


#: Largest chunk index, page and token count: every vector store keeps them as signed
#: 32-bit or 64-bit integers, and no real document has two billion chunks or pages.
MAX_CHUNK_NUMBER = 2**31 - 1
#: A finite float (NaN and infinity have no JSON form and no distance).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Chunk(_Model):
    """One RAG-ready piece of a result. ``chunk_id`` is stable for the same content.

    Times are seconds from the start of the recording, finite, ``start_s <= end_s``.
    """

    chunk_id: str = Field(min_length=1)
    index: int = Field(ge=0, le=MAX_CHUNK_NUMBER)
    text: str
    heading_path: list[str] = Field(default_factory=list)
    page: int | None = Field(default=None, ge=0, le=MAX_CHUNK_NUMBER)
    start_s: FiniteFloat | None = Field(default=None, ge=0)
    end_s: FiniteFloat | None = Field(default=None, ge=0)
    token_count: int | None = Field(default=None, ge=0, le=MAX_CHUNK_NUMBER)
    embedding: list[FiniteFloat] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _times_in_order(self) -> Chunk:
        if self.start_s is not None and self.end_s is not None and self.start_s > self.end_s:
            raise PydanticCustomError(
                "chunk_times",
                "end_s {end_s} is before start_s {start_s}",
                {"start_s": self.start_s, "end_s": self.end_s, "subpath": "end_s"},
            )
        return self


class TaskResult(_Model):
    """A completed task's output. Every chunk has its own ``index`` and ``chunk_id``:
    the index names the chunk's point in the vector store, so two chunks sharing one
    would overwrite each other there."""

    content: str = Field(description="the extracted content as Markdown")
    metadata: dict[str, Any] = Field(default_factory=dict)
    chunks: list[Chunk] = Field(default_factory=list)
    segments: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _chunks_distinct(self) -> TaskResult:
        for name in ("index", "chunk_id"):
            first_at: dict[object, int] = {}
            for position, chunk in enumerate(self.chunks):
                value = getattr(chunk, name)
                if value in first_at:
                    raise PydanticCustomError(
                        "duplicate_chunk",
                        "duplicate {name} {value} (chunk {first} has it too)",
                        {
                            "name": name,
                            "value": repr(value),
                            "first": first_at[value],
                            "subpath": f"chunks[{position}].{name}",
                        },
                    )
                first_at[value] = position
        return self


# ---- worker side ----------------------------------------------------------------------------


class DeviceInfo(_Model):
    kind: Literal["gpu", "cpu"]
    index: int | None = None
    name: str | None = None
    uuid: str | None = None
    memory_total_bytes: int | None = None


class RegisterRequest(_Model):
    worker_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
    host: str = Field(default="", max_length=255)
    worker_type: Literal["gpu", "cpu"] = "cpu"
    task_types: list[str] = Field(default_factory=list)
    capacity: int = Field(default=1, ge=1, le=1024)
    devices: list[DeviceInfo] = Field(default_factory=list)
    version: str = Field(default="", max_length=64, description="the worker's release")
    protocol_version: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="the worker protocol version it speaks; workers of release 0.1.0 send "
        "none, which means 1",
    )
    pid: int = Field(default=0, ge=0, le=2**31, description="the supervisor's process id")
    replaces_instance: str = Field(
        default="",
        max_length=64,
        description="an earlier instance of this worker id that the caller found dead "
        "(same host, its pid gone): its leases expire at once",
    )


class RegisterResponse(_Reply):
    worker_id: str
    lease_ttl_s: float
    heartbeat_interval_s: float
    max_wait_s: float
    #: Absent from servers of release 0.1.0 (which spoke version 1 only).
    protocol_version: int = 1
    server_version: str = ""
    #: Sent back as ``X-Morag-Worker-Instance`` on every later call; absent from
    #: servers of release 0.1.0.
    instance_id: str = ""
    #: The server's body limits (absent before 0.2.0): a result call (single or batch)
    #: must stay under ``max_result_bytes``, every other call under ``max_body_bytes``.
    max_body_bytes: int | None = None
    max_result_bytes: int | None = None
    #: The server stores a status report sent with heartbeats (absent before 0.2.0,
    #: whose servers refuse the field): a worker sends ``status`` only when this is true.
    worker_status: bool = False


class InputFile(_Reply):
    file_id: str
    name: str
    size: int
    sha256: str
    url: str


class TaskSpec(_Reply):
    """A leased task as a worker receives it."""

    task_id: str
    task_type: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    input_files: list[InputFile] = Field(default_factory=list)
    lease_token: str
    lease_expires_at: float
    attempt: int
    max_attempts: int
    timeout_seconds: float | None = None
    priority: int = 0
    user_id: str = ""


class LeaseRequest(_Model):
    max_tasks: int = Field(default=1, ge=1, le=100)
    wait_seconds: float = Field(default=0.0, ge=0.0, le=300.0)
    task_types: list[str] | None = None


class LeaseResponse(_Reply):
    tasks: list[TaskSpec]


class LeaseRenewal(_Model):
    task_id: str
    lease_token: str
    progress: float | None = Field(default=None, ge=0.0, le=1.0)
    stage: str | None = Field(default=None, max_length=64)


class _Report(BaseModel):
    """A part of the worker status report. Fields a newer worker adds are dropped, not
    refused: the report is for people, and it must never cost a heartbeat its leases."""

    model_config = ConfigDict(extra="ignore")


#: Longest model list per child in a status report; a cache holds a handful.
MAX_REPORTED_MODELS = 32


class ChildReport(_Report):
    """One child of a supervisor as its status report describes it."""

    name: str = Field(max_length=32)
    pool: str = Field(default="", max_length=16, description="gpu or cpu")
    gpu: int | None = None
    cores: list[int] = Field(default_factory=list, max_length=4096)
    state: str = Field(default="", max_length=16, description="starting, idle, busy …")
    task_id: str | None = Field(default=None, max_length=128)
    task_type: str | None = Field(default=None, max_length=64)
    stage: str | None = Field(default=None, max_length=64)
    progress: float | None = None
    models: list[str] = Field(default_factory=list, max_length=MAX_REPORTED_MODELS)
    cache_bytes: int = 0
    rss_bytes: int = 0
    gpu_memory_bytes: int = 0
    tasks_done: int = 0
    restarts: int = 0
    crashes: int = Field(default=0, description="crashes within the crash window")
    quarantine: str | None = Field(default=None, max_length=512)


class ReportedError(_Report):
    at: float
    type: str = Field(max_length=64)
    message: str = Field(max_length=512)


class WorkerStatusReport(_Report):
    """What a supervisor knows about itself, sent with its heartbeats (optional)."""

    children: list[ChildReport] = Field(default_factory=list, max_length=1024)
    draining: bool = False
    leasing_paused: str | None = Field(default=None, max_length=512)
    quarantined_gpus: dict[str, str] = Field(default_factory=dict, max_length=64)
    tasks_done: int = 0
    uptime_s: float = 0.0
    recent_errors: list[ReportedError] = Field(default_factory=list, max_length=20)


class HeartbeatRequest(_Model):
    leases: list[LeaseRenewal] = Field(default_factory=list, max_length=1000)
    status: WorkerStatusReport | None = Field(
        default=None,
        description="the supervisor's own state, for the dashboard; only to servers whose "
        "registration reply says worker_status",
    )

    @model_serializer(mode="wrap")
    def _without_absent_status(self, handler: SerializerFunctionWrapHandler) -> Any:
        """No ``status`` key at all when there is no report: servers before 0.2.0 refuse
        a field they do not know, even as null."""
        data = handler(self)
        if isinstance(data, dict) and data.get("status") is None:
            data.pop("status", None)
        return data


class RenewedLease(_Reply):
    task_id: str
    lease_expires_at: float


class HeartbeatResponse(_Reply):
    renewed: list[RenewedLease] = Field(default_factory=list)
    lost: list[str] = Field(default_factory=list, description="leases this worker no longer holds")
    cancel: list[str] = Field(default_factory=list, description="tasks cancelled by their owner")


class ResultRequest(_Model):
    lease_token: str
    status: Literal["completed", "failed"]
    result: TaskResult | None = None
    error: TaskError | None = None
    timings: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _body_matches_status(self) -> ResultRequest:
        if self.status == "failed" and self.error is None:
            raise ValueError("a failed result needs an error {type, message, retryable}")
        if self.status == "completed" and self.result is None:
            raise ValueError("a completed result needs a result {content, metadata, chunks}")
        return self


class BatchResult(ResultRequest):
    task_id: str


class BatchResultRequest(_Model):
    """Several results in one call: a busy worker's uploads coalesce into one round trip."""

    results: list[BatchResult] = Field(min_length=1, max_length=100)


class BatchResultOutcome(_Reply):
    task_id: str
    state: str | None = None
    error: ErrorDetail | None = None


class BatchResultResponse(_Reply):
    results: list[BatchResultOutcome]


class ReleaseRequest(_Model):
    lease_token: str
    reason: str = Field(default="released", max_length=256)


# ---- user side ----------------------------------------------------------------------------


class TaskSubmitJSON(_Model):
    """JSON form of ``POST /api/v1/tasks``: URL tasks (web, youtube), and tasks whose
    files were sent as resumable uploads (``uploads``)."""

    task_type: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-100, le=100)
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    timeout_seconds: float | None = Field(default=None, gt=0, le=7 * 86400)
    uploads: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="complete resumable uploads (POST /api/v1/uploads) that are the task's "
        "input files, in order",
    )


class UploadCreate(_Model):
    """``POST /api/v1/uploads``: start a resumable upload."""

    name: str = Field(min_length=1, description="the file's name, as the task will show it")
    size: int = Field(ge=0, description="the file's size in bytes")


class UploadState(_Model):
    """Where a resumable upload stands."""

    upload_id: str
    name: str
    size: int
    offset: int = Field(description="bytes the server holds; the next piece starts here")
    complete: bool


class TaskCreated(_Model):
    task_id: str


class TaskInfo(_Model):
    task_id: str
    task_type: str
    state: TaskState
    user_id: str
    priority: int
    attempt: int
    max_attempts: int
    parameters: dict[str, Any]
    input_files: list[InputFile]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: float | None = None
    stage: str | None = None
    worker_id: str | None = None
    last_error: TaskError | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    indexed_at: float | None = Field(default=None, description="when its chunks became searchable")
    index_state: Literal["pending", "indexed", "failed"] | None = Field(
        default=None,
        description="a completed task's search indexing: pending (waiting or retrying), "
        "indexed, or failed (given up after the server's attempts; an admin retries it)",
    )
    index_attempts: int = Field(default=0, description="failed indexing attempts so far")
    index_error: str | None = Field(default=None, description="the last indexing error")


class TaskList(_Model):
    tasks: list[TaskInfo]
    next_cursor: str | None = Field(
        default=None,
        description="pass as ?cursor= for the next (older) page; null on the last page",
    )


class TaskAttempt(_Model):
    """One lease of a task: who ran it, when, and how it ended."""

    attempt: int
    worker_id: str | None
    started_at: float
    finished_at: float | None
    outcome: Literal["running", "completed", "failed", "expired", "released", "cancelled"]
    error: TaskError | None = None
    timings: dict[str, float] = Field(default_factory=dict)


class TaskAttemptList(_Model):
    attempts: list[TaskAttempt] = Field(description="oldest first")


class TaskResultEnvelope(_Model):
    task_id: str
    state: TaskState
    result: TaskResult


class TaskParameter(_Model):
    """One parameter a task type accepts (``GET /api/v1/task-types``)."""

    name: str
    type: Literal["string", "integer", "number", "boolean"]
    description: str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None


class TaskTypeInfo(_Model):
    task_type: str
    input: Literal["files", "url", "none"] = Field(
        description="files: multipart upload; url: parameters.url; none: neither needed"
    )
    parameters: list[TaskParameter] | None = Field(
        description="accepted parameters; null for a plugin type whose schema the server "
        "does not know (any parameters are passed through)"
    )
    workers_online: int = Field(description="online workers serving this type for the caller")
    capacity_online: int = Field(description="their children, together")


class TaskTypeList(_Model):
    task_types: list[TaskTypeInfo]


# ---- workers (as users and admins see them) -----------------------------------------------


class WorkerInfo(_Model):
    worker_id: str
    host: str
    worker_type: str
    task_types: list[str]
    capacity: int = Field(description="children this worker runs")
    running: int = Field(description="tasks it holds a lease on now")
    devices: list[DeviceInfo]
    version: str
    protocol_version: int = Field(default=1, description="the worker protocol it registered with")
    instance_id: str = Field(default="", description="its current supervisor instance (admins)")
    user_id: str
    pool: bool
    registered_at: float
    last_seen_at: float
    online: bool = Field(description="seen within the online window (90 s)")
    status: WorkerStatusReport | None = Field(
        default=None, description="its last status report (null: it sends none)"
    )
    status_at: float | None = Field(default=None, description="when that report arrived")


class WorkerList(_Model):
    workers: list[WorkerInfo]


# ---- search index (admin) ------------------------------------------------------------------


class IndexFailure(_Model):
    task_id: str
    user_id: str
    task_type: str
    index_attempts: int
    index_error: str | None
    index_failed_at: float


class IndexFailureList(_Model):
    failures: list[IndexFailure]


class IndexRetryRequest(_Model):
    """Retry indexing of the named tasks, or of every failed one with ``all_failed``."""

    task_ids: list[str] = Field(default_factory=list, max_length=10000)
    all_failed: bool = False

    @model_validator(mode="after")
    def _names_something(self) -> IndexRetryRequest:
        if not self.task_ids and not self.all_failed:
            raise ValueError("name task_ids, or set all_failed to retry every failed row")
        return self


class IndexRetryResponse(_Model):
    retried: list[str] = Field(description="tasks queued for indexing again")
    not_failed: list[str] = Field(
        default_factory=list, description="named tasks that were not waiting for indexing"
    )


class IndexStatus(_Model):
    pending: int = Field(description="completed results waiting to be indexed")
    failed: int = Field(description="results the indexer gave up on")
    backend: str = Field(description="where chunks are stored")
    error: str | None = Field(default=None, description="why search is unavailable")


# ---- keys ---------------------------------------------------------------------------------


class KeyCreateRequest(_Model):
    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Role
    pool: bool = Field(default=False, description="a worker key that serves every user")
    expires_days: float | None = Field(default=None, gt=0)
    name: str = Field(default="", max_length=128)


class KeyInfo(_Model):
    key_id: str
    prefix: str
    user_id: str
    role: Role
    pool: bool
    name: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None


class KeyCreated(_Model):
    key: str = Field(description="the secret; shown once, stored only as a hash")
    info: KeyInfo


class KeyList(_Model):
    keys: list[KeyInfo]


class WhoAmI(_Reply):
    status: str = "ok"
    key_id: str
    user_id: str
    role: Role
    pool: bool


# ---- search -------------------------------------------------------------------------------


class SearchRequest(_Model):
    query: str = Field(min_length=1, max_length=4096)
    limit: int = Field(default=10, ge=1, le=100)
    filters: dict[str, Any] = Field(default_factory=dict)


class SearchHit(_Model):
    score: float
    task_id: str
    chunk_index: int
    text: str
    source: str
    heading_path: list[str] = Field(default_factory=list)
    page: int | None = None
    start_s: float | None = None
    end_s: float | None = None


class SearchResponse(_Model):
    hits: list[SearchHit]
