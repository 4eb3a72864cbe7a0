"""Every ``morag`` subcommand end to end against a real server (and supervisor where a task
must run), with the mistakes people make: bad ids, wrong types, unknown parameters."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

from cli_runner import morag
from harness import Cluster, status, submit_noop, wait_for

from morag_worker.cli.morag import build_parser


def _keys(cluster: Cluster, admin_file: Path) -> list[dict]:
    listed = morag(cluster, "keys", "list", "--json", key_file=admin_file)
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout)["keys"])


def test_keys_create_list_revoke_and_output_files(cluster: Cluster, tmp_path: Path) -> None:
    admin = cluster.root / "server" / "admin.key"
    created = morag(cluster, "keys", "create", "--user", "carol", "--role", "user", key_file=admin)
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("\n") == 1 and created.stdout.startswith("mrg_")  # only the key

    out = tmp_path / "carol.key"
    args = ("keys", "create", "--user", "carol", "--role", "worker", "--output", str(out))
    written = morag(cluster, *args, key_file=admin)
    assert written.returncode == 0 and written.stdout == "" and "mode 0600" in written.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text().startswith("mrg_")
    first = out.read_text()
    before = len(_keys(cluster, admin))
    again = morag(cluster, *args, key_file=admin)
    assert again.returncode == 1 and "exists; pass --force" in again.stderr
    nowhere = morag(cluster, *args[:-1], str(tmp_path / "no" / "k"), key_file=admin)
    assert nowhere.returncode == 1 and "does not exist" in nowhere.stderr
    assert len(_keys(cluster, admin)) == before  # refused before the server made a key
    forced = morag(cluster, *args, "--force", "--json", key_file=admin)
    assert forced.returncode == 0 and json.loads(forced.stdout)["file"] == str(out)
    assert out.read_text() != first and stat.S_IMODE(out.stat().st_mode) == 0o600

    table = morag(cluster, "keys", "list", key_file=admin).stdout
    assert table.splitlines()[0].split()[:5] == ["id", "prefix", "user", "role", "state"]
    assert "carol" in table and created.stdout.strip() not in table
    key_id = json.loads(forced.stdout)["info"]["key_id"]
    revoked = morag(cluster, "keys", "revoke", key_id, key_file=admin)
    assert revoked.returncode == 0 and f"revoked {key_id}" in revoked.stdout
    assert any(k["key_id"] == key_id and k["revoked_at"] for k in _keys(cluster, admin))
    unknown = morag(cluster, "keys", "revoke", "nope", key_file=admin)
    assert unknown.returncode == 1 and "key nope not found" in unknown.stderr
    as_user = morag(cluster, "keys", "list", key=created.stdout.strip())
    assert as_user.returncode == 1 and "403" in as_user.stderr and "role admin" in as_user.stderr
    bad_role = morag(cluster, "keys", "create", "--user", "x", "--role", "wizard", key_file=admin)
    assert bad_role.returncode == 2 and len(bad_role.stderr.splitlines()) == 2
    assert "invalid choice: 'wizard'" in bad_role.stderr.splitlines()[0]


def test_submit_wait_status_result_and_connection_flags_anywhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    user_file = cluster.key_file("carol", "user")
    cluster.supervisor(cluster.key_file("carol"), "--cpu-procs", "1")
    note = tmp_path / "note.md"
    note.write_text("# Greenhouse\n\nThe tomatoes ripened two weeks early this year.\n")
    # connection flags after the subcommand, nothing in the environment
    flags = ("--server-url", cluster.url, "--api-key-file", str(user_file))
    submitted = morag(None, "submit", str(note), "--type", "document", "--wait", *flags)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.splitlines()[0]
    assert task_id.startswith("t_") and "tomatoes ripened" in submitted.stdout
    assert f"{task_id}: completed in" in submitted.stderr  # progress goes to stderr
    # ... and before it
    shown = morag(None, *flags, "status", task_id)
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert lines["state"].startswith("completed (attempt 1 of 3)") and "note.md" in lines["file"]
    assert "in the queue" in lines["started"] and "ran" in lines["finished"]
    info = json.loads(morag(None, *flags, "status", task_id, "--json").stdout)
    assert info["state"] == "completed" and info["input_files"][0]["name"] == "note.md"
    assert "tomatoes" in morag(None, *flags, "result", task_id).stdout
    full = json.loads(morag(None, "result", task_id, "--json", *flags).stdout)
    assert full["result"]["chunks"][0]["heading_path"] == ["Greenhouse"]
    waited = morag(None, *flags, "submit", str(note), "--type", "document", "--wait", "--json")
    assert waited.returncode == 0 and json.loads(waited.stdout)["state"] == "completed"
    queued = json.loads(morag(None, *flags, "submit", str(note), "--type", "noop", "--json").stdout)
    assert queued["task_id"].startswith("t_")


def test_submit_mistakes_are_refused_before_anything_is_queued(
    cluster: Cluster, tmp_path: Path
) -> None:
    key = cluster.key("dave", "user")
    note = tmp_path / "n.txt"
    note.write_text("hello")
    cases = [
        (("submit", str(note), "--type", "sing"), "unknown task type; this server takes audio"),
        (
            ("submit", str(note), "--type", "audio", "--param", "speakers=2"),
            "--param speakers: not a parameter of audio tasks; audio accepts: diarize, embed, "
            "language, num_speakers",
        ),
        (("submit", str(note), "--type", "noop", "--param", "sleep_s=soon"), "expected number"),
        (("submit", str(note), "--type", "web"), "a web task takes an http(s) URL, not a file"),
        (("submit", "https://example.org/a.mp3", "--type", "audio"), "takes an uploaded file"),
        (("submit", str(tmp_path / "missing.txt"), "--type", "document"), "no such file"),
        (("submit", str(note), "--type", "noop", "--param", "sleep_s"), "expected KEY=VALUE"),
    ]
    for args, words in cases:
        refused = morag(cluster, *args, key=key)
        assert refused.returncode == 1 and words in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
    assert morag(cluster, "tasks", key=key).stdout.strip() == "no tasks"
    typo = morag(cluster, "submit", str(note), "--tpye", "noop", key=key)
    assert typo.returncode == 2
    assert typo.stderr.splitlines()[0].endswith("--tpye (did you mean --type?)")


def test_tasks_status_result_cancel_with_bad_ids_and_filters(cluster: Cluster) -> None:
    key = cluster.key("erin", "user")
    user = cluster.user("erin")
    assert morag(cluster, "tasks", "--state", "failed", key=key).stdout.strip() == (
        "no tasks (state=failed)"
    )
    ids = [submit_noop(user, sleep_s=600), submit_noop(user, echo="x")]
    doc = user.submit_file(Path(__file__), "document", {})
    listed = morag(cluster, "tasks", key=key)
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "id",
        "type",
        "file",
        "or",
        "URL",
        "state",
        "attempts",
        "age",
        "duration",
    ]
    assert [r.split()[0] for r in rows] == [doc, ids[1], ids[0]]
    assert "test_cli.py" in rows[0] and "queued" in rows[0] and "0/3" in rows[0]
    assert [
        r.split()[0]
        for r in morag(cluster, "tasks", "--type", "document", key=key).stdout.splitlines()[1:]
    ] == [doc]
    assert len(morag(cluster, "tasks", "--limit", "2", key=key).stdout.splitlines()) == 3
    assert len(json.loads(morag(cluster, "tasks", "--json", key=key).stdout)["tasks"]) == 3
    assert morag(cluster, "tasks", "--limit", "0", key=key).returncode == 1

    for command in ("status", "result", "cancel"):
        missing = morag(cluster, command, "t_000000000000000000000000", key=key)
        assert missing.returncode == 1 and "not found" in missing.stderr, command
    weird = morag(cluster, "status", "../keys", key=key)  # cannot reach another route
    assert weird.returncode == 1 and "not found" in weird.stderr.lower()
    pending = morag(cluster, "result", ids[0], key=key)
    assert pending.returncode == 1 and "has no result: it is queued" in pending.stderr

    cancelled = morag(cluster, "cancel", ids[0], key=key)
    assert cancelled.returncode == 0 and cancelled.stdout.startswith(f"cancelled {ids[0]}")
    again = morag(cluster, "cancel", ids[0], key=key)
    assert again.returncode == 0 and "already cancelled" in again.stderr
    assert json.loads(morag(cluster, "cancel", ids[0], "--json", key=key).stdout)["state"] == (
        "cancelled"
    )
    other = morag(cluster, "status", ids[0], key=cluster.key("frank", "user"))
    assert other.returncode == 1 and "not found" in other.stderr  # another user's task


def test_cancel_of_a_running_and_of_a_finished_task(cluster: Cluster) -> None:
    key = cluster.key("alice", "user")
    user = cluster.user("alice")
    _, health = cluster.supervisor(cluster.key_file("alice"), "--cpu-procs", "1")
    long = submit_noop(user, sleep_s=600)
    wait_for(lambda: status(health)["children"][0]["task_id"] == long, 30, "running")
    cancelled = morag(cluster, "cancel", long, key=key)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "stops there within a heartbeat" in cancelled.stdout
    # the next heartbeat carries the cancel; the child drops the task and serves again
    wait_for(lambda: status(health)["children"][0]["task_id"] is None, 30, "child freed")
    done = submit_noop(user)
    assert user.wait(done, 30)["state"] == "completed"
    finished = morag(cluster, "cancel", done, key=key)
    assert finished.returncode == 1 and "already completed; nothing to cancel" in finished.stderr
    assert user.get(f"/api/v1/tasks/{long}")["state"] == "cancelled"


def test_workers_types_and_search(cluster: Cluster) -> None:
    key = cluster.key("gina", "user")
    admin = cluster.root / "server" / "admin.key"
    assert "no workers registered" in morag(cluster, "workers", key=key).stdout
    types = morag(cluster, "types", key=key).stdout.splitlines()
    assert types[0].split()[:3] == ["type", "input", "workers"]
    assert any(line.split()[:4] == ["audio", "files", "0", "(0)"] for line in types)
    cluster.supervisor(cluster.key_file("gina"), "--cpu-procs", "1", "--worker-id", "gina-box")
    shown = morag(cluster, "workers", key=key).stdout.splitlines()
    assert shown[0].split() == [
        "id",
        "host",
        "types",
        "children",
        "running",
        "devices",
        "last",
        "seen",
    ]
    assert shown[1].split()[0] == "gina-box" and " cpu " in shown[1] and "ago" in shown[1]
    assert json.loads(morag(cluster, "workers", "--json", key_file=admin).stdout)["workers"]
    served = json.loads(morag(cluster, "types", "--json", key=key).stdout)["task_types"]
    assert {t["task_type"]: t["workers_online"] for t in served}["document"] == 1
    # this cluster's server runs with --no-index: search says so instead of failing obscurely
    searched = morag(cluster, "search", "tomatoes", key=key)
    assert searched.returncode == 1 and "search is not available" in searched.stderr


def leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every runnable subcommand, as typed: 'keys create', 'tasks' …"""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaf_commands(sub, f"{prefix}{name} ") or [f"{prefix}{name}"]
    return found


def test_every_subcommand_has_an_end_to_end_test() -> None:
    """A new subcommand needs a test here (or in the module named) before this passes."""
    covered = {
        "keys create": "test_keys_create_list_revoke_and_output_files",
        "keys list": "test_keys_create_list_revoke_and_output_files",
        "keys revoke": "test_keys_create_list_revoke_and_output_files",
        "submit": "test_submit_wait_status_result_and_connection_flags_anywhere",
        "status": "test_tasks_status_result_cancel_with_bad_ids_and_filters",
        "result": "test_tasks_status_result_cancel_with_bad_ids_and_filters",
        "cancel": "test_cancel_of_a_running_and_of_a_finished_task",
        "tasks": "test_tasks_status_result_cancel_with_bad_ids_and_filters",
        "workers": "test_workers_types_and_search",
        "types": "test_workers_types_and_search",
        "search": "test_workers_types_and_search",
        "models list": "test_models_cli.py",
        "models fetch": "test_models_cli.py",
        "models import": "test_models_cli.py",
        "models export": "test_models_cli.py",
        "models verify": "test_models_cli.py",
        "demo": "test_demo.py",
        "index status": "test_index_admin.py",
        "index failures": "test_index_failures.py",
        "index retry": "test_index_failures.py",
        "index rebuild": "test_index_admin.py",
        "index export": "test_index_admin.py",
        "index import": "test_index_admin.py",
    }
    assert sorted(leaf_commands(build_parser())) == sorted(covered)
    here = Path(__file__).parent
    for test in covered.values():
        assert (here / test).is_file() if test.endswith(".py") else test in globals(), test
