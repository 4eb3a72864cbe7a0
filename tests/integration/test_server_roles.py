"""Every role against every route of a real morag-server, as the role table in
docs/protocol.md says. The routes come from the application itself, so a new route
without an entry in ``ALLOWED`` fails this test until someone decides who may call it."""

from __future__ import annotations

from pathlib import Path

import requests
from fastapi.routing import iter_route_contexts
from harness import Cluster

from morag_worker.server.app import create_app
from morag_worker.server.state import ServerConfig

EVERYONE = {"anonymous", "revoked", "user", "worker", "pool", "admin"}
USERS = {"user", "admin"}
WORKERS = {"worker", "pool", "admin"}
ANY_KEY = {"user", "worker", "pool", "admin"}

#: Who may call each route (docs/protocol.md, "Keys and roles"). Public routes answer
#: everyone; every other route answers 401 without a valid key and 403 to other roles.
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("GET", "/health"): EVERYONE,
    ("GET", "/metrics"): EVERYONE,
    ("GET", "/openapi.json"): EVERYONE,
    ("GET", "/docs"): EVERYONE,
    ("GET", "/docs/oauth2-redirect"): EVERYONE,
    ("GET", "/redoc"): EVERYONE,
    ("POST", "/api/v1/tasks"): USERS,
    ("GET", "/api/v1/tasks"): USERS,
    ("GET", "/api/v1/tasks/{task_id}"): USERS,
    ("GET", "/api/v1/tasks/{task_id}/result"): USERS,
    ("DELETE", "/api/v1/tasks/{task_id}"): USERS,
    ("POST", "/api/v1/tasks/{task_id}/retry"): USERS,
    ("GET", "/api/v1/tasks/{task_id}/attempts"): USERS,
    ("GET", "/api/v1/files/{file_id}"): ANY_KEY,  # workers: only files of leased tasks
    ("POST", "/api/v1/uploads"): USERS,  # each key's own uploads (resumable)
    ("GET", "/api/v1/uploads/{upload_id}"): USERS,
    ("PATCH", "/api/v1/uploads/{upload_id}"): USERS,
    ("POST", "/api/v1/search"): USERS,
    ("POST", "/api/v1/keys"): USERS,  # a user: only worker keys for itself
    ("GET", "/api/v1/keys"): {"admin"},
    ("DELETE", "/api/v1/keys/{key_id}"): {"admin"},
    ("GET", "/api/v1/workers"): USERS,  # a user: the workers that may run its tasks
    ("GET", "/api/v1/task-types"): USERS,
    ("GET", "/api/v1/index"): {"admin"},
    ("GET", "/api/v1/index/failures"): {"admin"},
    ("POST", "/api/v1/index/retry"): {"admin"},
    ("POST", "/api/v1/index/rebuild"): {"admin"},
    ("GET", "/api/v1/index/export"): {"admin"},
    ("POST", "/api/v1/index/import"): {"admin"},
    ("GET", "/api/v1/workers/test"): ANY_KEY,
    ("POST", "/api/v1/workers/register"): WORKERS,
    ("POST", "/api/v1/workers/{worker_id}/lease"): WORKERS,
    ("GET", "/api/v1/workers/{worker_id}/tasks/next"): WORKERS,
    ("POST", "/api/v1/workers/{worker_id}/heartbeat"): WORKERS,
    ("POST", "/api/v1/workers/{worker_id}/tasks/{task_id}/result"): WORKERS,
    ("POST", "/api/v1/workers/{worker_id}/results"): WORKERS,
    ("POST", "/api/v1/workers/{worker_id}/tasks/{task_id}/release"): WORKERS,
    ("DELETE", "/api/v1/workers/{worker_id}"): WORKERS,
    # the dashboard: its page and files hold no data; its calls are the users'
    ("GET", "/ui"): EVERYONE,
    ("GET", "/ui/static/{name}"): EVERYONE,
    ("POST", "/ui/api/session"): USERS,  # a worker key cannot sign in
    ("GET", "/ui/api/session"): USERS,
    ("DELETE", "/ui/api/session"): USERS,
    ("GET", "/ui/api/overview"): USERS,
    ("GET", "/ui/api/tasks/{task_id}/content"): USERS,
    ("GET", "/ui/api/tasks/{task_id}/items"): USERS,
}
#: Required query parameters, so that a refusal can only come from the role check.
QUERIES: dict[tuple[str, str], str] = {
    ("GET", "/ui/api/tasks/{task_id}/items"): "?kind=chunks",
}

_FAILED = {"type": "x", "message": "y", "retryable": True}
#: A well-formed body per route, so that a refusal can only come from the role check.
BODIES: dict[tuple[str, str], object] = {
    ("POST", "/api/v1/tasks"): {"task_type": "noop", "parameters": {}},
    ("POST", "/api/v1/search"): {"query": "hello"},
    ("POST", "/api/v1/uploads"): {"name": "m.txt", "size": 6},
    ("POST", "/api/v1/index/retry"): {"all_failed": True},
    ("POST", "/api/v1/keys"): {"user_id": "alice", "role": "worker"},
    ("POST", "/api/v1/workers/register"): {"worker_id": "w-matrix"},
    ("POST", "/api/v1/workers/{worker_id}/lease"): {"max_tasks": 1, "task_types": ["web"]},
    ("POST", "/api/v1/workers/{worker_id}/heartbeat"): {"leases": []},
    ("POST", "/api/v1/workers/{worker_id}/tasks/{task_id}/result"): {
        "lease_token": "x",
        "status": "failed",
        "error": _FAILED,
    },
    ("POST", "/api/v1/workers/{worker_id}/results"): {
        "results": [{"task_id": "t_x", "lease_token": "x", "status": "failed", "error": _FAILED}]
    },
    ("POST", "/api/v1/workers/{worker_id}/tasks/{task_id}/release"): {"lease_token": "x"},
}


def _app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(ServerConfig(data_dir=tmp_path / "routes-only", index_results=False))
    try:
        return {
            (method, context.path)
            for context in iter_route_contexts(app.routes)  # included routers, flattened
            for method in context.methods or ()
            if method != "HEAD"
        }
    finally:
        app.state.morag.db.close()


def test_every_role_against_every_route(cluster: Cluster, tmp_path: Path) -> None:
    routes = _app_routes(tmp_path)
    assert routes == set(ALLOWED), (
        "routes without an entry in ALLOWED (decide who may call them, in docs/protocol.md "
        f"too): {sorted(routes - set(ALLOWED))}; entries for no route: "
        f"{sorted(set(ALLOWED) - routes)}"
    )
    revoked = cluster.admin.post_json("/api/v1/keys", {"user_id": "alice", "role": "user"})
    cluster.admin.delete(f"/api/v1/keys/{revoked['info']['key_id']}")
    keys = {
        "anonymous": None,
        "revoked": revoked["key"],
        "user": cluster.key("alice", "user"),
        "worker": cluster.key("alice", "worker"),
        "pool": cluster.key("pool", "worker", pool=True),
        "admin": (cluster.root / "server" / "admin.key").read_text().strip(),
    }
    alice = cluster.user("alice")
    reply = requests.post(
        f"{cluster.url}/api/v1/tasks",
        headers={"Authorization": alice.session.headers["Authorization"]},
        data={"task_type": "document"},
        files=[("files", ("m.txt", b"matrix"))],
        timeout=10,
    )
    task = alice.get(f"/api/v1/tasks/{reply.json()['task_id']}")
    values = {
        "task_id": task["task_id"],
        "file_id": task["input_files"][0]["file_id"],
        "worker_id": "w-matrix",
        "key_id": "000000000000",
        "name": "app.js",
        "upload_id": "u_000000000000",
    }
    wrong = []
    for (method, path), allowed in sorted(ALLOWED.items()):
        url = cluster.url + path.format(**values) + QUERIES.get((method, path), "")
        for role, key in keys.items():
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            body = BODIES.get((method, path))
            reply = requests.request(method, url, headers=headers, json=body, timeout=10)
            if role in allowed:
                no_store = path == "/api/v1/search" or path.startswith("/api/v1/index")
                ok = reply.status_code not in (401, 403) and (
                    reply.status_code < 500 or (no_store and reply.status_code == 503)
                )  # 503: this test server runs without indexing
            elif role in ("anonymous", "revoked"):
                ok = reply.status_code == 401
            else:
                ok = reply.status_code == 403
            if ok and reply.status_code in (401, 403):
                ok = "error" in reply.json()
            if not ok:
                wrong.append(f"{role:9} {method} {path}: {reply.status_code} {reply.text[:120]}")
    assert not wrong, "\n".join(wrong)
