"""The remote-jobs link's mapping and its conduct, against the table in docs/morag.md.

The mapping functions are called directly. The link's own calls go to small HTTP
servers on 127.0.0.1 (``_localhttp``) that answer as the table allows, including answers
the test double of a MoRAG server never gives (a poll that fails after a job, a server
without the API), since the link must follow the table, not one implementation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from _localhttp import Reply, serve

from morag_worker.client import HttpClient, ServerError
from morag_worker.config import load_config
from morag_worker.errors import ConfigError, FatalStartup
from morag_worker.links import remote_wire as wire
from morag_worker.links.names import disposition_name, safe_name
from morag_worker.links.remote_jobs import RemoteJobsLink, RemoteJobsSettings
from morag_worker.links.spool import ResultSpool
from morag_worker.protocol import RegisterRequest, ResultRequest, TaskError, TaskResult

SERVED = ["audio", "video", "document", "image", "web", "youtube", "noop"]
BASE = "http://127.0.0.1:8000"
NULL_JOB = {"job_id": None, "source_file_url": None, "content_type": None, "task_options": None}


def _answer(**fields: Any) -> wire.PollAnswer:
    raw = {
        "job_id": "0b4f3c2e-1d2a-4b5c-9e8f-7a6b5c4d3e2f",
        "source_file_url": "/api/v1/remote-jobs/0b4f3c2e-1d2a-4b5c-9e8f-7a6b5c4d3e2f/download",
        "content_type": "audio",
        "task_options": {},
        **fields,
    }
    answer = wire.read_poll_answer(json.dumps(raw).encode())
    assert answer is not None
    return answer


# ---- poll answers → tasks ---------------------------------------------------------------


def test_an_all_null_answer_is_no_job_and_a_job_becomes_a_task_with_a_local_token() -> None:
    assert wire.read_poll_answer(json.dumps(NULL_JOB).encode()) is None
    spec, ignored = wire.job_to_task(
        _answer(task_options={"language": "de", "num_speakers": 2, "chunk_size": 4000}),
        BASE,
        SERVED,
        "tok",
    )
    assert spec.task_id == "0b4f3c2e-1d2a-4b5c-9e8f-7a6b5c4d3e2f" and spec.task_type == "audio"
    assert spec.parameters == {"language": "de", "num_speakers": 2}
    assert ignored == ["chunk_size"]  # MoRAG's own option: left to MoRAG, never passed on
    assert spec.lease_token == "tok" and spec.attempt == spec.max_attempts == 1
    (file,) = spec.input_files
    assert file.url == f"{BASE}/api/v1/remote-jobs/{spec.task_id}/download"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"[1, 2]", "no job_id"),
        (json.dumps({**NULL_JOB, "job_id": "../../etc/passwd"}).encode(), "not usable"),
        (json.dumps({**NULL_JOB, "job_id": 17}).encode(), "not usable"),
    ],
)
def test_an_answer_that_is_not_a_poll_answer_is_refused(content: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        wire.read_poll_answer(content)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"content_type": "pdf"}, "content type 'pdf' is not one this worker processes"),
        ({"content_type": "Audio "}, None),  # canonical names: case and space do not matter
        ({"content_type": "process_video"}, None),  # the seed's alias
        ({"content_type": None}, "has no content_type"),
        ({"source_file_url": None}, "has no source_file_url"),
        ({"source_file_url": "http://evil.example/x"}, "is not on the server"),
        ({"source_file_url": "//evil.example/x"}, "is not on the server"),
        ({"task_options": [1]}, "task_options must be an object"),
        ({"task_options": {"num_speakers": "two"}}, "task_options.num_speakers: expected integer"),
        ({"task_options": {"num_speakers": 99}}, "must be at most 50"),
        ({"task_options": {"diarize": "yes"}}, "task_options.diarize: expected boolean"),
        ({"task_options": None}, None),
    ],
)
def test_a_job_this_worker_cannot_run_as_given_says_why(
    fields: dict[str, Any], why: str | None
) -> None:
    if why is None:
        spec, _ = wire.job_to_task(_answer(**fields), BASE, SERVED, "t")
        assert spec.task_type in ("audio", "video")
        return
    with pytest.raises(wire.BadJob, match=why):
        wire.job_to_task(_answer(**fields), BASE, SERVED, "t")


def test_a_type_this_worker_does_not_serve_is_refused_naming_what_it_runs() -> None:
    with pytest.raises(wire.BadJob, match=r"it runs: audio, document"):
        wire.job_to_task(_answer(content_type="video"), BASE, ["audio", "document"], "t")


def test_embed_and_url_options_are_not_the_jobs_to_set() -> None:
    spec, ignored = wire.job_to_task(
        _answer(content_type="web", task_options={"url": "http://x", "embed": True}),
        BASE,
        SERVED,
        "t",
    )
    assert spec.parameters == {} and ignored == ["embed", "url"]


def test_the_url_file_of_web_and_youtube_jobs(tmp_path: Path) -> None:
    spec, _ = wire.job_to_task(
        _answer(content_type="web", task_options={"keep_comments": True}), BASE, SERVED, "t"
    )
    holder = tmp_path / "url.txt"
    holder.write_bytes(b"\xef\xbb\xbfhttps://example.org/news/a?b=1\r\n")
    task = wire.with_url(spec, wire.url_from_file(holder))
    assert task.parameters == {"keep_comments": True, "url": "https://example.org/news/a?b=1"}
    assert task.input_files == []
    for bad, why in [
        (b"", "does not hold one http"),
        (b"ftp://example.org/x", "does not hold one http"),
        (b"https://a.example https://b.example", "does not hold one http"),
        (b"\xff\xfe", "not UTF-8"),
        (b"https://example.org/" + b"a" * wire.MAX_URL_FILE_BYTES, "at most"),
    ]:
        holder.write_bytes(bad)
        with pytest.raises(wire.BadJob, match=why):
            wire.url_from_file(holder)


def test_results_become_the_put_body_morag_expects() -> None:
    done = ResultRequest(
        lease_token="t",
        status="completed",
        result=TaskResult(content="**[00:00:01–00:00:04] SPEAKER_1:** hi", metadata={"a": 1}),
        timings={"download_s": 0.25, "process_s": 1.5, "pickup_s": 9.0},
    )
    assert wire.result_body(done) == {
        "success": True,
        "content": "**[00:00:01–00:00:04] SPEAKER_1:** hi",
        "metadata": {"a": 1},
        "processing_time": 1.75,
    }
    failed = ResultRequest(
        lease_token="t",
        status="failed",
        error=TaskError.of("bad_input", "not audio", retryable=False),
    )
    assert wire.result_body(failed) == {"success": False, "error_message": "bad_input: not audio"}


def test_polls_always_ask_for_one_job() -> None:
    path = wire.poll_path("gpu host/1", ["audio", "video"])
    query = "worker_id=gpu%20host%2F1&content_types=audio,video&max_jobs=1"
    assert path == f"/api/v1/remote-jobs/poll?{query}"


def test_file_names_from_content_disposition() -> None:
    assert disposition_name('attachment; filename="talk.mp3"') == "talk.mp3"
    assert disposition_name("attachment; filename*=utf-8''Besprechung%20M%C3%A4rz.ogg") == (
        "Besprechung März.ogg"
    )
    assert disposition_name('attachment; filename="../../etc/passwd"') == "passwd"
    assert disposition_name('attachment; filename="..\\..\\boot.ini"') == "boot.ini"
    assert disposition_name('attachment; filename=".."') == ""
    assert disposition_name(None) == "" and disposition_name("attachment") == ""
    assert safe_name("Besprechung März.ogg") == "Besprechung_März.ogg"
    assert safe_name("..hidden") == "hidden" and safe_name("") == "input"
    long = safe_name("x" * 300 + ".docx")
    assert long.endswith(".docx") and len(long) <= 100


# ---- the spool ------------------------------------------------------------------------


def test_kept_results_survive_a_new_spool_and_back_off(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path / "s", BASE)
    spool.put("job-1", {"success": True, "content": "x"})
    spool.put("job-2", {"success": False, "error_message": "e"})
    again = ResultSpool(tmp_path / "s", BASE)  # a restart
    assert again.waiting() == ["job-1", "job-2"]
    assert again.body("job-1") == {"success": True, "content": "x"}
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "s" / "job-1.json").stat().st_mode & 0o777 == 0o600
    again.failed("job-1", now=100.0)
    assert again.due(100.5) == ["job-2"] and again.due(101.0) == ["job-1", "job-2"]
    again.failed("job-1", now=101.0)
    assert "job-1" not in again.due(102.5)  # the pause doubled
    again.remove("job-1")
    assert again.waiting() == ["job-2"]
    (tmp_path / "s" / "job-2.json").write_text("{torn")
    assert again.body("job-2") is None and (tmp_path / "s" / "job-2.bad").exists()
    with pytest.raises(ValueError, match="cannot name a file"):
        again.put("../x", {})


# ---- configuration ----------------------------------------------------------------------


def _config(*argv: str, **env: str):  # type: ignore[no-untyped-def]
    return load_config(["--env-file", "", *argv], env)


def test_the_reference_workers_variables_map_onto_the_supervisors_settings() -> None:
    env = {
        "MORAG_SERVER_PROTOCOL": "morag-remote-jobs",
        "MORAG_API_BASE_URL": "http://morag:8000/",
        "MORAG_WORKER_CONTENT_TYPES": "audio, video",
        "MORAG_WORKER_POLL_INTERVAL": "10",
        "MORAG_WORKER_MAX_CONCURRENT_JOBS": "3",
        "MORAG_WORKER_ID": "gpu-7",
        "MORAG_TEMP_DIR": "/tmp/w",
        "STATE_DIRECTORY": "/var/lib/morag-worker:/var/lib/morag-worker/work",
    }
    config = _config(**env)
    assert config.server_protocol == "morag-remote-jobs" and config.api_key == ""
    assert config.server_url == "http://morag:8000" and config.content_types == ("audio", "video")
    assert config.poll_interval_s == 10 and config.max_concurrent == 3
    assert config.worker_id == "gpu-7" and str(config.work_dir) == "/tmp/w"
    assert str(config.state_dir) == "/var/lib/morag-worker"
    assert config.prefetch == 0  # a polled job cannot be handed back: none ahead of children
    # this project's names win over the reference worker's, and flags over both
    ours = _config(**env, MORAG_SERVER_URL="http://ours:1", POLL_INTERVAL="2", MORAG_PREFETCH="1")
    assert ours.server_url == "http://ours:1" and ours.poll_interval_s == 2 and ours.prefetch == 1
    flag = _config("--server-url", "http://flag:2", "--state-dir", "/srv/state", **env)
    assert flag.server_url == "http://flag:2" and str(flag.state_dir) == "/srv/state"


def test_protocol_settings_that_do_not_fit_are_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="expected morag or morag-remote-jobs, got 'redis'"):
        _config("--server-protocol", "redis", "--api-key", "k")
    with pytest.raises(ConfigError, match="applies to --server-protocol morag-remote-jobs"):
        _config("--content-types", "audio", "--api-key", "k")
    with pytest.raises(ConfigError, match="--api-key: no API key given"):
        _config()  # the own protocol still needs its key
    defaults = _config("--api-key", "k", XDG_STATE_HOME="/x")
    assert defaults.server_protocol == "morag" and defaults.prefetch == 1
    assert str(defaults.state_dir) == "/x/morag-worker"


# ---- the link against servers on 127.0.0.1 ------------------------------------------------


def _link(url: str, tmp_path: Path, **settings: Any) -> RemoteJobsLink:
    values = {
        "server_url": url,
        "worker_id": "w1",
        "content_types": (),
        "poll_interval_s": 4.0,
        "state_dir": tmp_path / "state",
        **settings,
    }
    return RemoteJobsLink(HttpClient(url, ""), RemoteJobsSettings(**values), SERVED)


def _json(body: object, status: int = 200) -> Reply:
    return Reply(status, {"Content-Type": "application/json"}, json.dumps(body).encode())


def _job(n: int) -> dict[str, Any]:
    return {
        "job_id": f"job-{n}",
        "source_file_url": f"/api/v1/remote-jobs/job-{n}/download",
        "content_type": "document",
        "task_options": {},
    }


def test_one_poll_per_wanted_job_stopping_at_no_job_then_backing_off(tmp_path: Path) -> None:
    answers = [_job(1), _job(2), NULL_JOB]
    queries: list[str] = []

    def poll(handler: Any) -> Reply:
        queries.append(handler.path)
        return _json(answers.pop(0) if answers else NULL_JOB)

    with serve({"/api/v1/remote-jobs/poll": poll}) as srv:
        link = _link(srv.url(""), tmp_path)
        reply = link.lease(5, ["document", "audio"], wait_s=30)
        assert [t.task_id for t in reply.tasks] == ["job-1", "job-2"] and reply.wait_s == 0
        assert len(queries) == 3 and all("max_jobs=1" in q for q in queries)
        assert all("content_types=audio,document&" in q for q in queries)  # only what fits
        pauses = [link.lease(1, ["document"], wait_s=30).wait_s for _ in range(6)]
        assert 0 < pauses[0] < pauses[2] <= 4.0 and pauses[-1] > 3.0  # doubling up to the cap
        answers.append(_job(3))
        assert link.lease(1, ["document"], 30).tasks and link.idle.next_s == 0.5  # reset


def test_a_key_is_sent_only_when_one_is_set(tmp_path: Path) -> None:
    seen: list[str | None] = []

    def poll(handler: Any) -> Reply:
        seen.append(handler.headers.get("Authorization"))
        return _json(NULL_JOB)

    with serve({"/api/v1/remote-jobs/poll": poll}) as srv:
        _link(srv.url(""), tmp_path).lease(1, ["document"], 0)
        settings = RemoteJobsSettings(srv.url(""), "w1", (), 4.0, tmp_path / "state")
        keyed = RemoteJobsLink(HttpClient(srv.url(""), "k3y"), settings, SERVED)
        keyed.lease(1, ["document"], 0)
    assert seen == [None, "Bearer k3y"]


def test_a_failed_poll_after_a_claimed_job_keeps_the_job(tmp_path: Path) -> None:
    calls = []

    def poll(handler: Any) -> Reply:
        calls.append(1)
        return _json(_job(1)) if len(calls) == 1 else _json({"detail": "Failed to poll"}, 500)

    with serve({"/api/v1/remote-jobs/poll": poll}) as srv:
        link = _link(srv.url(""), tmp_path)
        assert [t.task_id for t in link.lease(3, ["document"], 0).tasks] == ["job-1"]
        with pytest.raises(ServerError, match="Failed to poll"):
            link.lease(3, ["document"], 0)


def test_an_unusable_job_is_reported_with_its_id_for_a_failure_result(tmp_path: Path) -> None:
    bad = {**_job(4), "content_type": "hologram"}
    with serve({"/api/v1/remote-jobs/poll": lambda h: _json(bad)}) as srv:
        reply = _link(srv.url(""), tmp_path).lease(1, ["document"], 0)
    [(job_id, token, why)] = reply.unreadable
    assert job_id == "job-4" and token and "content type 'hologram'" in why


def test_startup_needs_health_and_the_api(tmp_path: Path) -> None:
    request = RegisterRequest(worker_id="w1")
    routes = {"/health": lambda h: _json({"status": "healthy"})}
    no_api = pytest.raises(FatalStartup, match="does not speak MoRAG's remote-jobs API")
    with serve(routes) as srv, no_api:  # no remote-jobs API: poll is 404
        _link(srv.url(""), tmp_path).register(request)
    no_health = pytest.raises(FatalStartup, match=r"HTTP 404 to GET /health: is --server-url")
    with serve({}) as srv, no_health:  # not even /health
        _link(srv.url(""), tmp_path).register(request)
    routes["/api/v1/remote-jobs/poll"] = lambda h: _json({"detail": [{"type": "missing"}]}, 422)
    with serve(routes) as srv:
        reply = _link(srv.url(""), tmp_path).register(request)
        assert reply.worker_id == "w1"
    routes["/health"] = lambda h: _json({"detail": "down"}, 503)
    with serve(routes) as srv:  # busy: the registrar retries, nothing fatal
        with pytest.raises(ServerError) as busy:
            _link(srv.url(""), tmp_path).register(request)
        assert busy.value.status == 503


def test_kept_results_are_sent_until_the_server_answers_for_them(tmp_path: Path) -> None:
    statuses = {"job-a": [500, 200], "job-b": [422, 200]}
    sent: list[tuple[str, dict[str, Any]]] = []

    def put(handler: Any) -> Reply:
        job = handler.path.split("/")[4]
        sent.append((job, json.loads(handler.request_body)))
        status = statuses[job].pop(0)
        if status == 200:
            return _json({"status": "completed", "ingestion_continued": True})
        return _json({"detail": [{"type": "missing", "loc": ["body", "x"]}]}, status)

    routes = {f"/api/v1/remote-jobs/{j}/result": put for j in statuses}
    with serve(routes) as srv:
        link = _link(srv.url(""), tmp_path)
        for job in statuses:  # results an earlier run could not deliver
            link.spool.put(job, {"success": True, "content": f"content of {job}"})
        link.courier.flush()
        assert [j for j, _ in sent] == ["job-a"]  # 500: kept, and the flush stops there
        link.courier.flush()  # job-a waits out its backoff; job-b is refused (422) ...
        assert sent[-1] == ("job-b", {"success": True, "content": "content of job-b"})
        body = link.spool.body("job-b")
        assert body is not None and body["success"] is False  # ... and becomes a failure
        assert "the server refused the result" in body["error_message"]
        link.courier.flush()
        assert sent[-1][0] == "job-b" and sent[-1][1]["success"] is False
        assert link.spool.waiting() == ["job-a"]
        time.sleep(1.2)  # job-a's first backoff
        link.courier.flush()
        assert sent[-1] == ("job-a", {"success": True, "content": "content of job-a"})
        assert link.spool.waiting() == []
