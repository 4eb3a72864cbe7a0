"""The deployment kit run as an operator runs it, against a real server on 127.0.0.1:
the seed's launchers start a supervisor that registers and works, ``morag-healthcheck``
finds and asks whichever program runs, the server reads secrets from files, and the
metric the KEDA scalers query is what the server exports.

The .bat launcher cannot run here (no Windows): it is checked for passing the same flags
to the same chain (.bat → .sh in WSL → .py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import requests
import yaml
from harness import Cluster, postgres_schema, submit_noop, wait_for

from morag_worker.cli.local import Proc, free_port, start_server, wait_http

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
LAUNCHER = SCRIPTS / "start_http_remote_worker.py"


def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kwargs)


# ---- The seed's launchers ------------------------------------------------------------------


def test_launcher_help_lists_the_seed_flags():
    done = run(sys.executable, str(LAUNCHER), "--help")
    assert done.returncode == 0
    for flag in (
        "--server-url",
        "--api-key",
        "--worker-type",
        "--poll-interval",
        "--max-concurrent",
    ):
        assert flag in done.stdout
    shell = run(
        str(SCRIPTS / "start-http-worker.sh"),
        "--help",
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert shell.returncode == 0 and shell.stdout == done.stdout


@pytest.mark.parametrize(
    "args,first_line",
    [
        (["--gpus", "0"], "unknown flag --gpus: this launcher takes the seed's flags"),
        (["--server-ur", "x"], "unknown flag --server-ur"),
        (["--server-url"], "argument --server-url: expected one argument"),
    ],
)
def test_launcher_refuses_other_flags_in_one_line(args, first_line):
    done = run(
        str(SCRIPTS / "start-http-worker.sh"), *args, env={**os.environ, "PYTHON": sys.executable}
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[0].startswith(
        f"start_http_remote_worker.py: error: {first_line}"
    )
    assert "-- --gpus 0,1" in done.stderr or "expected one argument" in done.stderr


def test_launcher_passes_bad_values_to_the_supervisor_which_names_them():
    done = run(
        sys.executable,
        str(LAUNCHER),
        "--server-url",
        "http://127.0.0.1:9",
        "--api-key",
        "k",
        "--worker-type",
        "tpu",
    )
    assert done.returncode == 2
    assert "--worker-type: expected gpu or cpu, got 'tpu'" in done.stderr


def test_launcher_refuses_a_cuda_uuid_it_cannot_map():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "GPU-5f3c", "MORAG_GPUS": ""}
    done = run(sys.executable, str(LAUNCHER), "--api-key", "k", env=env)
    assert done.returncode == 1 and "set MORAG_GPUS=0,1" in done.stderr


def registered(cluster: Cluster, worker_id: str) -> dict | None:
    workers = cluster.admin.get("/api/v1/workers")["workers"]
    return next((w for w in workers if w["worker_id"] == worker_id), None)


def test_python_launcher_starts_a_supervisor_that_registers_and_works(cluster, tmp_path):
    key = cluster.key("seed", "worker")
    health = free_port()
    log = tmp_path / "launcher.log"
    proc = Proc(
        [
            sys.executable,
            str(LAUNCHER),
            "--server-url",
            cluster.url,
            "--api-key",
            key,
            "--worker-type",
            "cpu",
            "--max-concurrent",
            "1",
            "--poll-interval",
            "2",
            "--",
            "--worker-id",
            "seed-py",
            "--health-port",
            str(health),
            "--health-host",
            "127.0.0.1",
            "--threads-per-proc",
            "1",
        ],
        log,
        {"MORAG_LOG_FORMAT": "json"},
    )
    try:
        wait_http(f"http://127.0.0.1:{health}/ready", 120, proc.proc)
        worker = registered(cluster, "seed-py")
        assert worker and worker["worker_type"] == "cpu"
        # exec: the launcher's process is now the supervisor, the key is not on its line.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"morag_worker.cli.supervisor" in cmdline and key.encode() not in cmdline
        task = submit_noop(cluster.user("seed"))
        assert cluster.user("seed").wait(task, 60)["state"] == "completed"
    finally:
        code = proc.stop(timeout_s=30)
    assert code == 0, log.read_text()[-2000:]  # SIGTERM reached the supervisor: a drain


def test_shell_launcher_reads_env_and_maps_cuda_visible_devices(cluster, tmp_path):
    """The seed's flow: `cp configs/http-worker.env.example .env`, edit, run the script."""
    health = free_port()
    example = (REPO / "configs" / "http-worker.env.example").read_text()
    values = {
        "MORAG_SERVER_URL": cluster.url,
        "MORAG_API_KEY": cluster.key("env", "worker"),
        "WORKER_TYPE": "cpu",
        "POLL_INTERVAL": "2",
        "OMP_NUM_THREADS": "1",
    }
    for name, value in values.items():
        example, count = re.subn(rf"^{name}=.*$", f"{name}={value}", example, flags=re.M)
        assert count == 1, name
    extra = f"MORAG_HEALTH_PORT={health}\nMORAG_HEALTH_HOST=127.0.0.1\nMORAG_WORKER_ID=seed-sh\n"
    (tmp_path / ".env").write_text(example + extra + "PYTORCH_DISABLE_NNPACK=1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MORAG_", "WORKER_TYPE"))}
    env.update(PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="0", MORAG_LOG_FORMAT="json")
    proc = subprocess.Popen(
        [str(SCRIPTS / "start-http-worker.sh")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "log").open("wb"),
    )
    try:
        wait_http(f"http://127.0.0.1:{health}/ready", 120, proc)
        assert registered(cluster, "seed-sh")
        environ = dict(
            item.split("=", 1)
            for item in Path(f"/proc/{proc.pid}/environ").read_bytes().decode().split("\0")
            if "=" in item
        )
        # .env reached the environment the children inherit; the seed's GPU choice became
        # MORAG_GPUS (a cpu worker then uses none).
        assert environ["PYTORCH_DISABLE_NNPACK"] == "1" and environ["MORAG_GPUS"] == "0"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (tmp_path / "log").read_text()[-2000:]


def test_launcher_without_the_package_uses_the_clones_venv(tmp_path):
    """`python scripts/start_http_remote_worker.py` with a Python lacking morag-worker: the
    clone's .venv (what `make install` makes) takes over."""
    bare = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    if bare is None or run(bare, "-c", "import morag_worker, dotenv").returncode == 0:
        pytest.skip("no Python without morag-worker on this machine")
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(LAUNCHER, clone / "scripts")
    venv.create(clone / ".venv", with_pip=False)
    site = next((clone / ".venv" / "lib").glob("python3*/site-packages"))
    paths = [p for p in sys.path if p.endswith("site-packages")] + [str(REPO)]
    (site / "shared.pth").write_text("\n".join(paths) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = run(
        bare,
        str(clone / "scripts" / LAUNCHER.name),
        "--server-url",
        "ftp://x",
        "--api-key",
        "k",
        env=env,
    )
    assert "the scheme is needed" in done.stderr, done.stderr
    assert done.returncode == 2


def test_bat_launcher_hands_the_same_flags_to_the_shell_launcher():
    text = (SCRIPTS / "start-http-worker.bat").read_bytes().decode()
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")  # cmd.exe wants CRLF
    (call,) = [line for line in text.splitlines() if line.startswith("wsl ")]
    assert "start-http-worker.sh" in call and call.rstrip().endswith("%*")
    assert re.search(r"exit /b %errorlevel%", text)
    assert "docker compose -f docker-compose.workers.yml up" in text  # the way without WSL
    shell = (SCRIPTS / "start-http-worker.sh").read_text()
    assert re.search(r'^exec "\$python" "\$here/start_http_remote_worker.py" "\$@"$', shell, re.M)


def test_readme_maps_every_seed_name():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## The seed's names") :]
    for name in (
        "scripts/start_http_remote_worker.py",
        "scripts/start-http-worker.sh",
        "scripts/start-http-worker.bat",
        "configs/http-worker.env.example",
        "docker-compose.workers.yml",
        "--server-url",
        "--api-key",
        "--worker-type",
        "--poll-interval",
        "--max-concurrent",
        "MORAG_SERVER_URL",
        "MORAG_API_KEY",
        "WORKER_TYPE",
        "POLL_INTERVAL",
        "MAX_CONCURRENT_TASKS",
        "MORAG_FORCE_CPU",
        "CUDA_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
        "MEMORY_LIMIT",
        "HF_HOME",
        "LOG_LEVEL",
        "morag-http-worker-gpu",
    ):
        assert f"`{name}`" in table, name


# ---- morag-healthcheck ---------------------------------------------------------------------


def in_own_pid_namespace(script: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (bash) as a container would: alone in a PID namespace, so the only
    programs /proc shows are the ones it starts."""
    if (
        shutil.which("unshare") is None
        or run("unshare", "--pid", "--fork", "--mount-proc", "true").returncode
    ):
        pytest.skip("unshare --pid needs root (or user namespaces) here")
    return subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "bash", "-c", f"{WAIT_FOR}\n{script}"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


HEALTHCHECK = f"{sys.executable} -m morag_worker.cli.healthcheck"
#: Bash: poll a URL for up to two minutes.
WAIT_FOR = (
    'wait_for() { for _ in $(seq 1200); do curl -sf "$1" >/dev/null && return; sleep 0.1; done; }'
)


def test_healthcheck_asks_the_server_on_the_port_it_was_given(tmp_path):
    port = free_port()
    server = f"{sys.executable} -m morag_worker.cli.server --data-dir {tmp_path} --no-index"
    done = in_own_pid_namespace(f"""
        {HEALTHCHECK}; echo "none=$?"
        MORAG_SERVER_PORT={port} {server} --host 127.0.0.1 >{tmp_path}/log 2>&1 &
        wait_for http://127.0.0.1:{port}/health
        {HEALTHCHECK}; echo "up=$?"
        kill -STOP %1; {HEALTHCHECK}; echo "stopped=$?"; kill -CONT %1; kill %1; wait
    """)
    assert "none=1" in done.stdout and "up=0" in done.stdout and "stopped=1" in done.stdout, done
    assert "no morag-server or morag-supervisor process runs here" in done.stderr
    assert f"http://127.0.0.1:{port}/health did not answer (timed out)" in done.stderr


def test_healthcheck_asks_the_supervisor_on_its_health_port(cluster, tmp_path):
    key_file = cluster.key_file("hc")
    health = free_port()
    supervisor = (
        f"{sys.executable} -m morag_worker.cli.supervisor --server-url {cluster.url} "
        f"--api-key-file {key_file} --cpu-procs 1 --threads-per-proc 1"
    )
    done = in_own_pid_namespace(f"""
        MORAG_HEALTH_PORT={health} {supervisor} --health-host=127.0.0.1 >{tmp_path}/log 2>&1 &
        wait_for http://127.0.0.1:{health}/ready
        {HEALTHCHECK}; echo "up=$?"
        kill -TERM %1; wait
        {HEALTHCHECK}; echo "gone=$?"
    """)
    assert "up=0" in done.stdout and "gone=1" in done.stdout, (
        done,
        (tmp_path / "log").read_text()[-2000:],
    )


# ---- Server secrets from files, and the metric KEDA scales on -------------------------------


def test_server_reads_its_database_url_from_a_file(tmp_path):
    with postgres_schema() as url:
        secret = tmp_path / "database-url"
        secret.write_text(url + "\n")
        port = free_port()
        server = start_server(
            tmp_path / "data", port, "--no-index", env={"MORAG_DATABASE_URL_FILE": str(secret)}
        )
        try:
            health = requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            assert health["database"] == "postgres", health
        finally:
            server.stop()


def test_server_names_an_unreadable_secret_file(tmp_path):
    done = run(
        sys.executable,
        "-m",
        "morag_worker.cli.server",
        "--data-dir",
        str(tmp_path),
        "--database-url-file",
        str(tmp_path / "missing"),
    )
    assert done.returncode == 2  # bad configuration, like a flag typo
    assert done.stderr.strip().endswith(
        f"--database-url-file: cannot read {tmp_path / 'missing'}: No such file or directory"
    )


def test_server_exports_the_series_the_keda_scalers_query(cluster):
    submit_noop(cluster.user("keda"))
    text = wait_for(lambda: requests.get(f"{cluster.url}/metrics", timeout=5).text, what="metrics")
    series = re.findall(r"^morag_server_tasks\{([^}]*)\} (\S+)$", text, re.M)
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', s)) | {"value": v} for s, v in series]
    queued = [s for s in labels if s["task_type"] == "noop" and s["state"] == "queued"]
    assert queued and float(queued[0]["value"]) == 1.0
    for document in yaml.safe_load_all(
        (REPO / "deploy" / "k8s" / "keda-scaledobjects.yaml").read_text()
    ):
        query = document["spec"]["triggers"][0]["metadata"]["query"]
        types = re.search(r'task_type=~"([^"]+)"', query).group(1).split("|")
        states = re.search(r'state=~"([^"]+)"', query).group(1).split("|")
        exported = {(s["task_type"], s["state"]) for s in labels}
        assert {(t, st) for t in types for st in states} <= exported, query
