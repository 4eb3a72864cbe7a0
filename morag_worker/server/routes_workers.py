"""Worker-side endpoints: register, lease (long-poll), heartbeat, result, release."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Depends, Request, Response

from morag_worker import __version__
from morag_worker.protocol import (
    BatchResultRequest,
    BatchResultResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    LeaseRequest,
    LeaseResponse,
    RegisterRequest,
    RegisterResponse,
    ReleaseRequest,
    ResultRequest,
    Role,
    TaskSpec,
    WhoAmI,
    canonical_task_type,
)
from morag_worker.server.auth import Caller
from morag_worker.server.deps import caller, require, state
from morag_worker.server.errors import ApiError
from morag_worker.server.limits import error_responses
from morag_worker.server.metrics import LEASE_WAIT
from morag_worker.server.notify import Interest
from morag_worker.server.state import ServerState
from morag_worker.server.workers import INSTANCE_HEADER, WorkerIdConflict

router = APIRouter(
    prefix="/api/v1/workers",
    tags=["workers"],
    responses=error_responses(401, 403, 408, 413, 507),
)

#: Worker protocol versions this server serves. A server keeps serving the previous
#: version for at least one release after a bump, so workers can be upgraded after the
#: servers, one host at a time (docs/protocol.md, Compatibility).
SUPPORTED_PROTOCOL_VERSIONS: tuple[int, ...] = (1,)


def _worker(who: Caller) -> Caller:
    require(who, "worker", "admin")
    return who


@router.get("/test", response_model=WhoAmI)
async def auth_test(who: Caller = Depends(caller)) -> WhoAmI:
    """The seed's troubleshooting call: 200 with the key's identity if the key works."""
    return WhoAmI(key_id=who.key_id, user_id=who.user_id, role=Role(who.role), pool=who.pool)


@router.post("/register", response_model=RegisterResponse)
async def register(
    body: RegisterRequest, who: Caller = Depends(caller), st: ServerState = Depends(state)
) -> RegisterResponse:
    _worker(who)
    if body.protocol_version not in SUPPORTED_PROTOCOL_VERSIONS:
        raise ApiError(
            400,
            "unsupported_protocol_version",
            f"this worker speaks protocol version {body.protocol_version} (release "
            f"{body.version or 'unknown'}); this server ({__version__}) supports "
            f"{_versions()}: upgrade the "
            + (
                "server first"
                if body.protocol_version > max(SUPPORTED_PROTOCOL_VERSIONS)
                else "worker"
            ),
            "protocol_version",
        )
    unknown = [t for t in body.task_types if canonical_task_type(t) not in st.config.task_types]
    if unknown:
        raise ApiError(
            422,
            "invalid",
            f"task_types: unknown {unknown}; known: {list(st.config.task_types)}",
            "task_types",
        )
    try:
        instance_id = st.workers.register(who, body, legacy=_legacy(body))
    except WorkerIdConflict as exc:
        raise ApiError(409, exc.code, exc.message, "worker_id", exc.details) from None
    ttl = st.config.policy.lease_ttl_s
    if _legacy(body):
        # A worker of release 0.1.0: its reply model refuses fields it does not know,
        # so it gets exactly the fields that release defined.
        return Response(  # type: ignore[return-value]
            json.dumps(
                {
                    "worker_id": body.worker_id,
                    "lease_ttl_s": ttl,
                    "heartbeat_interval_s": ttl / 3,
                    "max_wait_s": st.config.max_wait_s,
                }
            ),
            media_type="application/json",
        )
    return RegisterResponse(
        worker_id=body.worker_id,
        lease_ttl_s=ttl,
        heartbeat_interval_s=ttl / 3,
        max_wait_s=st.config.max_wait_s,
        protocol_version=body.protocol_version,
        server_version=__version__,
        instance_id=instance_id,
        max_body_bytes=st.config.limits.max_body_bytes,
        max_result_bytes=st.config.limits.max_result_bytes,
        worker_status=True,
    )


def _legacy(body: RegisterRequest) -> bool:
    """A worker of release 0.1.0, which sends no protocol version."""
    return "protocol_version" not in body.model_fields_set


def _versions() -> str:
    return ", ".join(str(v) for v in SUPPORTED_PROTOCOL_VERSIONS)


def _task_types(st: ServerState, worker_id: str, asked: list[str] | None) -> list[str]:
    """The types a lease may return: as asked, else as registered, else every type."""
    if asked:
        return [canonical_task_type(t) for t in asked]
    registered = st.workers.task_types(worker_id)
    return registered or list(st.config.task_types)


async def _lease(
    request: Request, st: ServerState, who: Caller, worker_id: str, body: LeaseRequest
) -> list[TaskSpec]:
    wait_s = min(body.wait_seconds, st.config.max_wait_s)
    if wait_s <= 0:  # not a long-poll: nothing to count
        return await _claim(request, st, who, worker_id, body, wait_s)
    with st.long_polls.hold(who.key_id, wait_s):
        return await _claim(request, st, who, worker_id, body, wait_s)


async def _claim(
    request: Request,
    st: ServerState,
    who: Caller,
    worker_id: str,
    body: LeaseRequest,
    wait_s: float,
) -> list[TaskSpec]:
    started = time.monotonic()
    deadline = started + wait_s
    types = _task_types(st, worker_id, body.task_types)
    interest = Interest(frozenset(types), None if who.pool else who.user_id)
    st.workers.touch(worker_id)
    waited = False
    woken_for = None  # the task a notification woke this poll for: it claims or passes on
    while True:
        seen = st.notifier.version
        # A worker that went away while waiting (stopped, killed) must not be handed
        # tasks nobody will run: they would sit leased until their lease expired.
        if waited and await request.is_disconnected():
            st.notifier.pass_on(woken_for)
            return []
        try:
            tasks = st.queue.claim(who, worker_id, types, body.max_tasks, _instance(request))
        except BaseException:
            st.notifier.pass_on(woken_for)
            raise
        woken_for = None
        remaining = deadline - time.monotonic()
        if tasks or remaining <= 0:
            LEASE_WAIT.observe(time.monotonic() - started)
            return tasks
        due = st.queue.next_due(who, types)
        if due is not None:
            remaining = min(remaining, max(0.01, due - time.time()))
        woken_for = await st.notifier.wait(seen, remaining, interest)
        waited = True


@router.post("/{worker_id}/lease", response_model=LeaseResponse, responses=error_responses(429))
async def lease(
    worker_id: str,
    body: LeaseRequest,
    request: Request,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> Response:
    """Lease up to ``max_tasks`` tasks, waiting up to ``wait_seconds`` for one to arrive."""
    _worker(who)
    reply = LeaseResponse(tasks=await _lease(request, st, who, worker_id, body))
    # Serialised once, here: the hot path skips FastAPI's second validation pass.
    return Response(reply.model_dump_json(), media_type="application/json")


@router.get(
    "/{worker_id}/tasks/next",
    response_model=TaskSpec,
    responses={204: {"description": "no task available"}, **error_responses(429)},
)
async def next_task(
    worker_id: str,
    request: Request,
    wait_seconds: float = 0.0,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> Response:
    """The seed's polling shape: one task (200) or none (204)."""
    _worker(who)
    body = LeaseRequest(max_tasks=1, wait_seconds=max(0.0, min(wait_seconds, 300.0)))
    tasks = await _lease(request, st, who, worker_id, body)
    if not tasks:
        return Response(status_code=204)
    return Response(tasks[0].model_dump_json(), media_type="application/json")


@router.post("/{worker_id}/heartbeat", response_model=HeartbeatResponse)
async def heartbeat(
    worker_id: str,
    body: HeartbeatRequest,
    request: Request,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> HeartbeatResponse:
    """Renew the listed leases; keep the worker's status report when it sends one."""
    _worker(who)
    st.workers.touch(worker_id)
    if body.status is not None:
        st.workers.store_status(who, worker_id, _instance(request) or "", body.status)
    return st.queue.heartbeat(who, body.leases)


@router.post("/{worker_id}/tasks/{task_id}/result")
async def result(
    worker_id: str,
    task_id: str,
    body: ResultRequest,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> dict[str, str]:
    _worker(who)
    new_state = st.queue.finish(who, task_id, body)
    committed = time.monotonic()
    st.disk.note_write_ok()
    if new_state == "queued":
        await st.notifier.notify()
    await st.acknowledge(committed)  # the worker deletes its copy once we answer
    return {"task_id": task_id, "state": new_state}


@router.post("/{worker_id}/results", response_model=BatchResultResponse)
async def results(
    worker_id: str,
    body: BatchResultRequest,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> Response:
    """Several results at once; each is fenced on its own and gets its own outcome."""
    _worker(who)
    outcomes = st.queue.finish_batch(who, body.results)
    committed = time.monotonic()
    st.disk.note_write_ok()
    if any(outcome.state == "queued" for outcome in outcomes):
        await st.notifier.notify()
    await st.acknowledge(committed)  # the worker deletes its copies once we answer
    reply = BatchResultResponse(results=outcomes)
    return Response(reply.model_dump_json(), media_type="application/json")


@router.post("/{worker_id}/tasks/{task_id}/release")
async def release(
    worker_id: str,
    task_id: str,
    body: ReleaseRequest,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> dict[str, str]:
    """Give a task back unstarted (drain): it is queued again and no attempt is counted."""
    _worker(who)
    st.queue.release(who, task_id, body.lease_token)
    await st.notifier.notify()
    return {"task_id": task_id, "state": "queued"}


@router.delete("/{worker_id}")
async def unregister(
    worker_id: str,
    request: Request,
    who: Caller = Depends(caller),
    st: ServerState = Depends(state),
) -> dict[str, object]:
    """Unregister; the leases this supervisor instance still holds go back to the queue
    (without an instance header: every lease this key holds under the worker id)."""
    _worker(who)
    instance_id = _instance(request) or ""
    released = st.queue.release_worker(who, worker_id, instance_id)
    st.workers.unregister(who, worker_id, instance_id)
    if released:
        await st.notifier.notify()
    return {"worker_id": worker_id, "released": released}


def _instance(request: Request) -> str | None:
    """The supervisor instance making the call (absent for the seed's clients)."""
    value = request.headers.get(INSTANCE_HEADER, "").strip()
    return value[:64] or None
