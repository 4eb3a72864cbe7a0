"""Image descriptions through a pluggable describer.

Two describers, chosen by the settings (the endpoint wins when both are set):

- :class:`EndpointDescriber`: an OpenAI-compatible ``/chat/completions`` endpoint
  (vLLM, llama.cpp server, Ollama, a hosted API) given an image as a data URL.
  The endpoint is configured by the operator, so it is trusted and is not passed
  through the URL guard (it is often on localhost).
- :class:`LocalVlmDescriber`: a vision-language model in a local directory, run with
  transformers' ``image-text-to-text`` pipeline (``local_files_only``: nothing is fetched).

:func:`make_describer` returns ``None`` when neither is configured; the image result
then says ``"description": {"status": "not_configured"}``.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Protocol

import requests
from PIL import Image

from morag_worker.errors import ModelMissing, TaskFailure
from morag_worker.models.cache import ModelKey
from morag_worker.processors.settings import ProcessorSettings

PROMPT = (
    "Describe this image for a search index in two to four sentences: what it shows, "
    "any visible text, and anything a person might search for."
)
#: Longest side sent to a describer: VLMs resize to about 1000 px anyway, and a
#: smaller upload keeps requests fast and bounded.
MAX_SIDE_PX = 1024
#: Longest description kept: a caption, not an essay.
MAX_TOKENS = 300


class Describer(Protocol):
    """Describes one image. ``name`` is reported in the result's metadata."""

    name: str

    def describe(self, image: Image.Image) -> str: ...


def _jpeg_data_url(image: Image.Image) -> str:
    copy = image.convert("RGB")
    copy.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX))
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


class EndpointDescriber:
    """An OpenAI-compatible chat-completions endpoint that accepts image inputs."""

    def __init__(self, endpoint: str, model: str, api_key: str, timeout_s: float) -> None:
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model = model
        self.name = f"endpoint:{model or 'default'}"
        self._api_key = api_key
        self._timeout_s = timeout_s

    def describe(self, image: Image.Image) -> str:
        """Return the endpoint's description; network errors and 5xx are retryable."""
        content = [
            {"type": "text", "text": PROMPT},
            {"type": "image_url", "image_url": {"url": _jpeg_data_url(image)}},
        ]
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
        }
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            response = requests.post(self.url, json=body, headers=headers, timeout=self._timeout_s)
        except requests.RequestException as exc:
            raise TaskFailure("describe", f"{self.url}: {exc}", retryable=True) from None
        if response.status_code != 200:
            raise TaskFailure(
                "describe",
                f"{self.url} answered HTTP {response.status_code}: {response.text[:300]}",
                retryable=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            text = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise TaskFailure(
                "describe", f"{self.url} answered without choices[0].message", retryable=False
            ) from None
        return str(text or "").strip()


class LocalVlmDescriber:
    """A local vision-language model directory run with transformers (offline)."""

    def __init__(self, path: str, models: Any, device: str) -> None:
        self.path = path
        self.name = f"local:{Path(path).name}"
        key = ModelKey("vlm", path, device)
        loader = lambda: self._load(device)  # noqa: E731 - deferred until a cache miss
        self._pipeline = models.get(key, loader) if models is not None else loader()

    def _load(self, device: str) -> Any:
        if not Path(self.path).is_dir():
            raise ModelMissing(f"--describe-model-path {self.path!r} is not a directory")
        try:
            from transformers import pipeline
        except ImportError:
            raise ModelMissing(
                "--describe-model-path needs the transformers package (and torch)"
            ) from None
        # image-text-to-text (transformers >= 4.47) serves chat VLMs: Qwen2-VL,
        # SmolVLM, LLaVA, Idefics …; it replaced the caption-only image-to-text task.
        return pipeline(
            "image-text-to-text",
            model=self.path,
            device=device if device.startswith("cuda") else "cpu",
            model_kwargs={"local_files_only": True},
        )

    def describe(self, image: Image.Image) -> str:
        copy = image.convert("RGB")
        copy.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX))
        content = [{"type": "image", "image": copy}, {"type": "text", "text": PROMPT}]
        messages = [{"role": "user", "content": content}]
        output = self._pipeline(text=messages, max_new_tokens=MAX_TOKENS, return_full_text=False)
        return str(output[0].get("generated_text", "")).strip() if output else ""


def make_describer(settings: ProcessorSettings, models: Any, device: str) -> Describer | None:
    """The describer the settings ask for, or ``None`` when none is configured."""
    if settings.describe_endpoint:
        return EndpointDescriber(
            settings.describe_endpoint,
            settings.describe_model,
            settings.describe_api_key,
            settings.describe_timeout_s,
        )
    if settings.describe_model_path:
        return LocalVlmDescriber(settings.describe_model_path, models, device)
    return None
