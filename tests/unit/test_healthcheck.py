"""``morag-healthcheck``'s reading of a process: which program, which address and port.
(tests/integration/test_deploy_kit.py runs it against a real server and supervisor.)"""

from __future__ import annotations

import pytest

from morag_worker.cli.healthcheck import PROGRAMS, health_url, identify

SERVER, SUPERVISOR = PROGRAMS


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["/usr/local/bin/python3", "/usr/local/bin/morag-server", "--port", "8000"], SERVER),
        (["/opt/morag-worker/bin/python3", "/opt/morag-worker/bin/morag-supervisor"], SUPERVISOR),
        (["python", "-m", "morag_worker.cli.supervisor", "--gpus", "0"], SUPERVISOR),
        (["/sbin/docker-init", "--", "morag-server"], None),  # tini: its child is the program
        (["python3", "-c", "from multiprocessing.spawn import spawn_main"], None),  # a child
        (["python3", "-m", "morag_worker.cli.healthcheck"], None),
    ],
)
def test_identify_knows_our_programs_by_script_or_module(argv, expected):
    assert identify(argv) is expected


@pytest.mark.parametrize(
    "program,argv,environ,url",
    [
        (SERVER, [], {}, "http://127.0.0.1:8000/health"),
        (SERVER, ["--port", "9000", "--host", "0.0.0.0"], {}, "http://127.0.0.1:9000/health"),
        (SERVER, ["--port=9001"], {"MORAG_SERVER_PORT": "7000"}, "http://127.0.0.1:9001/health"),
        (SERVER, [], {"MORAG_SERVER_PORT": "7000"}, "http://127.0.0.1:7000/health"),
        (SUPERVISOR, [], {}, "http://127.0.0.1:8080/health"),
        (SUPERVISOR, [], {"MORAG_HEALTH_HOST": "10.1.2.3"}, "http://10.1.2.3:8080/health"),
        (SUPERVISOR, ["--health-host", "::1"], {}, "http://[::1]:8080/health"),
        (SUPERVISOR, ["--health-port", "1", "--health-port", "2"], {}, "http://127.0.0.1:2/health"),
    ],
)
def test_health_url_follows_flags_then_environment_then_defaults(program, argv, environ, url):
    assert health_url(program, ["python", program.name, *argv], environ) == url
