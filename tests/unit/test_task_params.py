"""Per-type parameter schemas: unknown names and wrong types are refused by name."""

from __future__ import annotations

import pytest

from morag_worker.protocol import TASK_TYPES
from morag_worker.task_params import TASK_PARAMETERS, parameter_problem, parameters_of


def test_every_built_in_type_has_a_schema_and_embed() -> None:
    assert set(TASK_PARAMETERS) == set(TASK_TYPES)
    for task_type in TASK_TYPES:
        names = [p.name for p in parameters_of(task_type) or []]
        assert "embed" in names and names == sorted(names)


def test_unknown_names_are_all_listed_with_what_the_type_accepts() -> None:
    field, message = parameter_problem("audio", {"speakers": 2, "lang": "en"}) or ("", "")
    assert field == "parameters.lang"
    assert "lang, speakers" in message
    assert "audio accepts: diarize, embed, language, num_speakers" in message


@pytest.mark.parametrize(
    ("task_type", "params", "words"),
    [
        ("audio", {"num_speakers": "2"}, "expected integer"),
        ("audio", {"num_speakers": True}, "expected integer"),
        ("audio", {"num_speakers": 0}, "at least 1"),
        ("audio", {"num_speakers": 51}, "at most 50"),
        ("audio", {"diarize": "false"}, "expected boolean"),
        ("noop", {"sleep_s": "5"}, "expected number"),
        ("noop", {"sleep_s": -1}, "at least 0"),
        ("web", {"url": 5}, "expected string"),
        ("web", {"url": "https://x", "keep_comments": "yes"}, "expected boolean"),
        ("document", {"embed": 1}, "expected boolean"),
    ],
)
def test_wrong_values_are_refused(task_type: str, params: dict, words: str) -> None:
    problem = parameter_problem(task_type, params)
    assert problem is not None and words in problem[1], problem


def test_good_parameters_and_plugin_types_pass() -> None:
    assert (
        parameter_problem("audio", {"language": "de", "num_speakers": 2, "diarize": False}) is None
    )
    assert parameter_problem("noop", {"sleep_s": 1.5, "echo": "x", "embed": True}) is None
    assert parameter_problem("youtube", {"url": "https://x", "captions": False}) is None
    assert parameter_problem("web", {"url": "https://x", "keep_comments": True}) is None
    # a plugin type's parameters are the plugin's to check: the server passes them through
    assert parameters_of("hog") is None and parameter_problem("hog", {"mib": 5}) is None
