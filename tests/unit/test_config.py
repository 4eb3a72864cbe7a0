"""Supervisor configuration: precedence, the seed's names, and one clear line on errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from morag_worker.config import load_config
from morag_worker.errors import ConfigError

KEY = "mrg_abcdef012345_" + "k" * 43


def test_flags_beat_environment_beat_dotenv_beat_defaults(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "POLL_INTERVAL=7\nMAX_CONCURRENT_TASKS=3\nMORAG_SERVER_URL=http://dotenv:1\n"
    )
    env = {"MORAG_API_KEY": KEY, "MAX_CONCURRENT_TASKS": "2"}
    config = load_config(["--env-file", str(env_file), "--server-url", "http://flag:9"], env)
    assert config.server_url == "http://flag:9"  # flag over .env
    assert config.max_concurrent == 2  # environment over .env
    assert config.poll_interval_s == 7.0  # .env over default
    assert config.drain_timeout_s == 300.0  # default
    assert config.worker_type == "cpu" and config.gpus_spec == "none"


def test_seed_variables_and_gpu_shape(tmp_path: Path) -> None:
    env = {"MORAG_API_KEY": KEY, "WORKER_TYPE": "gpu", "OMP_NUM_THREADS": "4", "LOG_LEVEL": "debug"}
    config = load_config(["--env-file", str(tmp_path / "none")], env)
    assert config.worker_type == "gpu" and config.gpus_spec == "all"
    assert config.threads_per_proc == 4 and config.log_level == "DEBUG"
    forced = load_config(["--env-file", str(tmp_path / "none")], {**env, "MORAG_FORCE_CPU": "1"})
    assert forced.gpus_spec == "none" and forced.force_cpu


def test_api_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    config = load_config(["--api-key-file", str(key_file), "--env-file", "/nonexistent"], {})
    assert config.api_key == KEY


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (["--poll-interval", "soon"], {}, "--poll-interval"),
        (["--server-url", "ftp://x"], {}, "--server-url"),
        (["--worker-type", "tpu"], {}, "--worker-type"),
        ([], {"MORAG_API_KEY": ""}, "--api-key"),
        (["--api-key-file", "/nonexistent/key"], {"MORAG_API_KEY": ""}, "--api-key-file"),
        (["--log-format", "xml"], {}, "--log-format"),
        (["--prefetch", "-1"], {}, "--prefetch"),
    ],
)
def test_bad_settings_name_the_setting(argv: list[str], env: dict[str, str], names: str) -> None:
    environ = {"MORAG_API_KEY": KEY, **env}
    with pytest.raises(ConfigError, match=names):
        load_config([*argv, "--env-file", "/nonexistent"], environ)


def test_cli_exits_2_with_one_line_before_any_child(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "morag_worker.cli.supervisor",
            "--poll-interval",
            "soon",
            "--api-key",
            KEY,
            "--env-file",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--poll-interval" in lines[0] and KEY not in proc.stderr


def test_supervisor_process_never_imports_torch() -> None:
    code = (
        "import sys, morag_worker.cli.supervisor, morag_worker.supervisor.supervisor, "
        "morag_worker.supervisor.child, morag_worker.processors.base; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'numpy' not in sys.modules, 'numpy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
