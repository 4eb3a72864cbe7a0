"""`--preload` warms each child's model cache before it reports ready."""

from __future__ import annotations

from harness import Cluster, status


def test_preloaded_models_are_in_the_cache_when_ready(cluster: Cluster) -> None:
    _, health = cluster.supervisor(
        cluster.key_file("alice"), "--cpu-procs", "1", "--preload", "whisper:tiny.en,resemblyzer"
    )
    [child] = status(health)["children"]
    models = " ".join(child["models"])
    assert "whisper:tiny.en:cpu:int8" in models and "resemblyzer" in models
