"""The dashboard's server side over HTTP, against a real morag-server and supervisor:
sessions and their cookie, the origin check on changes, retry and the attempts history,
list filters, result views of a hostile document, and the supervisors' status reports.
(The pages themselves are driven in a browser by tests/browser.)"""

from __future__ import annotations

from pathlib import Path

import requests
from harness import Cluster, submit_noop, wait_for

from morag_worker.cli.api import Api

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _sign_in(cluster: Cluster, key: str) -> requests.Session:
    browser = requests.Session()
    reply = browser.post(
        f"{cluster.url}/ui/api/session", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    return browser


def test_a_session_cookie_stands_for_the_key_and_changes_only_from_its_origin(
    cluster: Cluster,
) -> None:
    key = cluster.key("alice", "user")
    reply = requests.post(
        f"{cluster.url}/ui/api/session", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    cookie = reply.headers["set-cookie"]
    assert reply.json()["user_id"] == "alice" and reply.json()["role"] == "user"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS the cookie is Secure
    assert key not in cookie and key.split("_")[2] not in cookie
    browser = requests.Session()
    browser.cookies.update(reply.cookies)
    task_id = submit_noop(Api(cluster.url, key), sleep_s=600)
    assert browser.get(f"{cluster.url}/api/v1/tasks/{task_id}", timeout=10).status_code == 200
    url = f"{cluster.url}/api/v1/tasks/{task_id}"
    # a change on the cookie alone: refused unless the browser says it is same-origin
    for headers in (
        {},
        {"Sec-Fetch-Site": "same-site"},  # another port or subdomain of the same site
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": f"http://127.0.0.1:{cluster.port + 1}"},
        {"Origin": "null"},
    ):
        refused = browser.delete(url, headers=headers, timeout=10)
        assert refused.status_code == 403, (headers, refused.text)
        assert refused.json()["error"]["code"] == "cross_origin"
    assert browser.get(url, timeout=10).json()["state"] == "queued"  # nothing changed
    same = browser.delete(url, headers={"Origin": cluster.url}, timeout=10)
    assert same.status_code == 200 and same.json()["state"] == "cancelled"
    # signing out ends the session for good
    out = browser.delete(
        f"{cluster.url}/ui/api/session", headers={"Sec-Fetch-Site": "same-origin"}, timeout=10
    )
    assert out.json() == {"signed_out": True}
    stale = requests.get(url, cookies=reply.cookies, timeout=10)
    assert stale.status_code == 401 and "sign in again" in stale.json()["error"]["message"]


def test_worker_keys_cannot_sign_in_and_revoking_a_key_ends_its_sessions(
    cluster: Cluster,
) -> None:
    worker = requests.post(
        f"{cluster.url}/ui/api/session",
        headers={"Authorization": f"Bearer {cluster.key('alice', 'worker')}"},
        timeout=10,
    )
    assert worker.status_code == 403 and "worker key" in worker.json()["error"]["message"]
    bad = requests.post(
        f"{cluster.url}/ui/api/session", headers={"Authorization": "Bearer mrg_x_y"}, timeout=10
    )
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    created = cluster.admin.post_json("/api/v1/keys", {"user_id": "bob", "role": "user"})
    browser = _sign_in(cluster, created["key"])
    assert browser.get(f"{cluster.url}/ui/api/session", timeout=10).json()["user_id"] == "bob"
    cluster.admin.delete(f"/api/v1/keys/{created['info']['key_id']}")
    after = browser.get(f"{cluster.url}/api/v1/tasks", timeout=10)
    assert after.status_code == 401


def test_retry_a_failed_task_keeps_its_attempts_and_only_its_owner_may(
    cluster: Cluster,
) -> None:
    cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1")
    alice, bob = cluster.user("alice"), cluster.user("bob")
    task_id = alice.submit_file(FIXTURES / "documents" / "unsupported.bin", "document", {})
    assert alice.wait(task_id, 120)["state"] == "failed"
    status, body = _call(cluster, bob, "POST", f"/api/v1/tasks/{task_id}/retry")
    assert status == 404  # another user's task does not exist for bob
    assert _call(cluster, bob, "GET", f"/api/v1/tasks/{task_id}/attempts")[0] == 404
    status, body = _call(cluster, alice, "POST", f"/api/v1/tasks/{task_id}/retry")
    assert status == 200 and body["attempt"] == 0 and body["last_error"] is None
    assert alice.wait(task_id, 120)["state"] == "failed"  # it fails again: the file is bad
    attempts = alice.get(f"/api/v1/tasks/{task_id}/attempts")["attempts"]
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "failed"), (1, "failed")]
    assert all(a["error"]["type"] == "bad_input" and a["worker_id"] for a in attempts)
    assert "process_s" in attempts[1]["timings"] and "lease_token" not in attempts[1]
    done = submit_noop(alice)
    alice.wait(done, 60)
    status, body = _call(cluster, alice, "POST", f"/api/v1/tasks/{done}/retry")
    assert status == 409 and body["error"]["code"] == "not_retryable"
    assert "completed" in body["error"]["message"]


def test_list_filters_by_text_user_and_time(cluster: Cluster) -> None:
    alice, bob = cluster.user("alice"), cluster.user("bob")
    doc = alice.submit_file(FIXTURES / "documents" / "sample.md", "document", {})
    web = alice.post_json(
        "/api/v1/tasks", {"task_type": "web", "parameters": {"url": "https://example.org/Sample"}}
    )["task_id"]
    submit_noop(alice)
    bobs = bob.submit_file(FIXTURES / "documents" / "sample.txt", "document", {})
    ids = lambda api, **q: [t["task_id"] for t in api.get("/api/v1/tasks", q)["tasks"]]  # noqa: E731
    assert ids(alice, q="SAMPLE") == [web, doc]
    assert ids(alice, q="sample.md") == [doc]
    assert ids(cluster.admin, q="sample") == [bobs, web, doc]
    assert ids(cluster.admin, q="sample", user_id="bob") == [bobs]
    created = alice.get(f"/api/v1/tasks/{web}")["created_at"]
    assert ids(alice, created_after=created, task_type="web") == [web]
    assert ids(alice, created_before=created, q="sample") == [doc]
    status, body = _call(cluster, alice, "GET", "/api/v1/tasks?user_id=bob")
    assert status == 403 and body["error"]["field"] == "user_id"
    assert _call(cluster, alice, "GET", "/api/v1/tasks?user_id=alice")[0] == 200
    for bad in ("created_after=-1", "created_before=soon", "q=" + "x" * 513):
        status, body = _call(cluster, alice, "GET", f"/api/v1/tasks?{bad}")
        assert status == 422 and body["error"]["field"] == bad.split("=")[0], body


def test_result_views_of_a_hostile_document_page_and_sanitise(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1")
    alice = cluster.user("alice")
    page = tmp_path / "hostile.md"
    sections = [
        f"## Part {n}\n\n<script>window.pwned={n}</script> text [x](javascript:alert({n}))\n"
        for n in range(4000)
    ]
    page.write_text("# Hostile\n\n<img src=x onerror=alert(1)>\n\n" + "\n".join(sections))
    task_id = alice.submit_file(page, "document", {})
    assert alice.wait(task_id, 120)["state"] == "completed"
    first = alice.get(f"/ui/api/tasks/{task_id}/content")
    assert first["parts"] > 1 and first["metadata"]["words"] > 1000
    htmls = [first["html"]] + [
        alice.get(f"/ui/api/tasks/{task_id}/content", {"part": n})["html"]
        for n in range(1, first["parts"])
    ]
    html = "".join(htmls)
    assert "<script" not in html and "<img" not in html
    assert "href=" not in html  # the javascript: links stay text, not links
    assert "&lt;script&gt;window.pwned=3999&lt;/script&gt;" in html  # everything, as text
    assert _call(cluster, alice, "GET", f"/ui/api/tasks/{task_id}/content?part=999")[0] == 404
    chunks = alice.get(f"/ui/api/tasks/{task_id}/items", {"kind": "chunks", "limit": 5})
    assert chunks["total"] > 5 and len(chunks["items"]) == 5
    assert "embedding" not in chunks["items"][0] and chunks["items"][0]["index"] == 0
    later = alice.get(f"/ui/api/tasks/{task_id}/items", {"kind": "chunks", "offset": 5})
    assert later["items"][0]["index"] == 5
    assert alice.get(f"/ui/api/tasks/{task_id}/items", {"kind": "segments"})["total"] == 0
    bob = cluster.user("bob")
    assert _call(cluster, bob, "GET", f"/ui/api/tasks/{task_id}/content")[0] == 404
    queued = submit_noop(alice, sleep_s=1)
    status, body = _call(cluster, alice, "GET", f"/ui/api/tasks/{queued}/content")
    assert status in (404, 409) and body["error"]["code"] in ("no_result", "not_found")


def test_supervisors_report_their_children_idle_and_busy(cluster: Cluster) -> None:
    cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "2")
    alice = cluster.user("alice")

    def report() -> dict | None:
        [worker] = cluster.admin.get("/api/v1/workers")["workers"]
        return worker["status"]

    idle = wait_for(report, 30, "an idle supervisor's first status report")
    children = {c["name"]: c for c in idle["children"]}
    assert set(children) == {"cpu0", "cpu1"} and not idle["draining"]
    assert all(c["pool"] == "cpu" and c["cores"] and c["gpu"] is None for c in children.values())
    task_id = submit_noop(alice, sleep_s=4)
    busy = wait_for(
        lambda: [c for c in (report() or {}).get("children", []) if c["task_id"] == task_id],
        30,
        "the running task in a child of the report",
    )
    assert busy[0]["state"] == "busy" and busy[0]["task_type"] == "noop"
    alice.wait(task_id, 60)
    mine = alice.get("/api/v1/workers")["workers"][0]
    assert mine["status"]["children"] and mine["status_at"] > 0  # the owner sees it too
    assert cluster.user("carol").get("/api/v1/workers")["workers"] == []
    overview = alice.get("/ui/api/overview")
    assert overview["workers"][0]["status"]["children"]
    assert sum(overview["throughput"]["completed"]) == 1 and not overview["all_users"]


def _call(cluster: Cluster, api: Api, method: str, path: str) -> tuple[int, dict]:
    reply = requests.request(
        method,
        cluster.url + path,
        headers={"Authorization": api.session.headers["Authorization"]},
        timeout=10,
    )
    return reply.status_code, reply.json()
