"""Log output of a real subprocess: JSON fields, text on a terminal, and no API key in
any line — passed in a message, an extra, an exception, a standard-library record or
a warning."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from morag_worker.errors import ConfigError
from morag_worker.observability.logging import REDACTED, redact, setup_logging

REPO = Path(__file__).resolve().parents[2]
KEY = "mrg_k3y1d_" + "S3cr3tBase64url-_xYz0123456789"
CUSTOM_SECRET = "hunter2-database-password"

SCRIPT = textwrap.dedent(
    """
    import logging, sys, warnings
    from loguru import logger
    from morag_worker.observability.logging import register_secret, setup_logging

    key, custom, fmt = sys.argv[1], sys.argv[2], sys.argv[3]
    setup_logging("INFO", fmt, worker_id="w1")
    register_secret(custom)
    task = logger.bind(task_id="t-1", task_type="audio", child="gpu0")
    task.info("leased with key {}", key)
    logger.bind(api_key=key, attempt=2, ratio=0.5).info("bound extras")
    logger.debug("not shown at INFO")
    try:
        secret_local = key
        raise RuntimeError("server said 401 for " + secret_local)
    except RuntimeError:
        task.exception("upload failed")
    logging.getLogger("urllib3").warning("sent Authorization: Bearer %s", key)
    logging.getLogger("urllib3").warning("url https://s/api?api_key=%s&x=1", "opaque123")
    logger.info("database password is {}", custom)
    warnings.warn("MORAG_API_KEY=" + key)
    """
)


def run_logging(fmt: str, *, terminal: bool = False) -> str:
    """Run SCRIPT in a fresh interpreter and return what it wrote to stderr."""
    args = [sys.executable, "-c", SCRIPT, KEY, CUSTOM_SECRET, fmt]
    if not terminal:
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, cwd=REPO, stderr=follower, stdout=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    return re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode())  # colour codes out


def assert_no_secret(output: str) -> None:
    assert KEY not in output
    assert KEY[len("mrg_") :] not in output
    assert "S3cr3tBase64url" not in output
    assert CUSTOM_SECRET not in output
    assert "opaque123" not in output
    assert REDACTED in output


def test_json_lines_carry_the_fields_and_no_secret():
    output = run_logging("json")
    assert_no_secret(output)
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 7  # the DEBUG line is filtered out
    first = lines[0]
    assert first["message"] == f"leased with key {REDACTED}"
    assert first["level"] == "INFO"
    assert first["timestamp"].endswith("Z") and first["timestamp"][10] == "T"
    assert (first["worker_id"], first["task_id"], first["task_type"], first["child"]) == (
        "w1",
        "t-1",
        "audio",
        "gpu0",
    )
    for line in lines:
        for key in ("timestamp", "level", "message", "worker_id", "task_id", "task_type", "child"):
            assert key in line
    bound = lines[1]
    assert bound["api_key"] == REDACTED
    assert (bound["attempt"], bound["ratio"], bound["task_id"]) == (2, 0.5, None)
    failed = lines[2]
    assert failed["level"] == "ERROR" and "RuntimeError: server said 401 for" in failed["exception"]
    assert lines[3]["message"] == f"sent Authorization: Bearer {REDACTED}"
    assert lines[3]["source"].startswith("__main__:")  # the caller, not the logging module
    assert lines[6]["level"] == "WARNING" and "MORAG_API_KEY=" in lines[6]["message"]


def test_auto_is_json_when_stderr_is_not_a_terminal():
    output = run_logging("auto")
    assert json.loads(output.splitlines()[0])["worker_id"] == "w1"


def test_auto_is_readable_text_on_a_terminal():
    output = run_logging("auto", terminal=True)
    assert_no_secret(output)
    assert not output.lstrip().startswith("{")
    assert "worker_id=w1 task_id=t-1 task_type=audio child=gpu0" in output
    assert "RuntimeError: server said 401 for" in output


def test_text_format_without_a_terminal_has_no_colour_codes():
    output = run_logging("text")
    assert_no_secret(output)
    assert "\x1b[" not in output
    assert "| INFO     | worker_id=w1 task_id=t-1" in output


def test_redact_patterns():
    assert redact("key mrg_abcdefghijklmnop1234 end") == f"key {REDACTED} end"
    assert redact("mrg_short") == "mrg_short"  # too short to be a key
    assert (
        redact('{"Authorization": "Bearer abc.def"}') == f'{{"Authorization": "Bearer {REDACTED}"}}'
    )
    assert redact("authorization=rawtoken x") == f"authorization={REDACTED} x"
    assert redact("password: pw123, user: bob") == f"password: {REDACTED}, user: bob"
    assert redact("no secrets here, 42 tasks") == "no secrets here, 42 tasks"


@pytest.mark.parametrize(
    ("level", "fmt", "setting"), [("LOUD", "json", "LOG_LEVEL"), ("INFO", "xml", "--log-format")]
)
def test_bad_settings_name_the_setting(level, fmt, setting):
    with pytest.raises(ConfigError, match=setting):
        setup_logging(level, fmt)


TASK_SCRIPT = textwrap.dedent(
    """
    import logging, sys, threading
    from loguru import logger
    from morag_worker.observability.logging import (
        clear_current_task, set_current_task, setup_logging,
    )

    setup_logging(sys.argv[1], "json", child="cpu0")
    set_current_task("t-42", "audio")
    lib = logging.getLogger("faster_whisper")
    thread = threading.Thread(target=lambda: lib.warning("decoding from a thread"))
    thread.start()
    thread.join()
    lib.info("library chatter")
    logging.getLogger("morag_worker.processors.audio").info("our own info line")
    clear_current_task()
    logger.info("between tasks")
    """
)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_lines_written_during_a_task_name_it_and_library_chatter_stays_out(level: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", TASK_SCRIPT, level],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = {json.loads(line)["message"]: json.loads(line) for line in done.stderr.splitlines()}
    threaded = lines["decoding from a thread"]
    assert (threaded["task_id"], threaded["task_type"], threaded["child"]) == (
        "t-42",
        "audio",
        "cpu0",
    )
    assert lines["our own info line"]["task_id"] == "t-42"
    assert lines["between tasks"]["task_id"] is None
    assert ("library chatter" in lines) == (level == "DEBUG")
