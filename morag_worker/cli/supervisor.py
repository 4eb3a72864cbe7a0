"""``morag-supervisor``: lease tasks and run them in GPU/CPU child processes."""

from __future__ import annotations

import sys

from morag_worker.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    from morag_worker.config import load_config

    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"morag-supervisor: configuration error: {exc}", file=sys.stderr)
        return 2
    from morag_worker.observability.logging import register_secret, setup_logging

    register_secret(config.api_key)
    setup_logging(config.log_level, config.log_format, worker_id=config.worker_id)
    from morag_worker.supervisor.devices import open_nvml
    from morag_worker.supervisor.supervisor import Supervisor

    try:
        supervisor = Supervisor(config, open_nvml())
    except ConfigError as exc:
        print(f"morag-supervisor: configuration error: {exc}", file=sys.stderr)
        return 2
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
