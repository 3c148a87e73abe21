"""Large language models behind one small interface: structured (JSON schema) answers.

Backends: Ollama through the `ollama` client (production), any OpenAI-compatible server
(`/v1/chat/completions` with `response_format: json_schema`, over httpx), llama.cpp with a
local GGUF file (`llama-cpp-python`, imported only when chosen), and none. Nothing here
downloads a model: each backend uses a model that is already served or already on disk.

Every failure (unreachable, timeout, HTTP error, an answer that is not JSON) raises
`LLMError`, so a caller can fall back to a deterministic answer in one place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

log = logging.getLogger(__name__)

BACKENDS = ("auto", "ollama", "openai", "llamacpp", "none")


class LLMError(RuntimeError):
    """The model could not give an answer (the caller falls back)."""


@dataclass
class LLMResult:
    data: dict[str, Any]
    model: str  # "<backend>:<model>", what the report records as the author
    seconds: float  # wall time of the call
    generation_seconds: float | None = None  # what the server says it spent, when it says
    usage: dict[str, Any] = field(default_factory=dict)


class LLM(Protocol):
    name: str

    def complete_json(self, system: str, prompt: str, schema: dict[str, Any]) -> LLMResult: ...


def _parse_json(text: str, backend: str) -> dict[str, Any]:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise LLMError(f"{backend} answered with text that is not JSON: {text[:200]!r}") from exc
    if not isinstance(data, dict):
        raise LLMError(f"{backend} answered with JSON that is not an object")
    return data


class NoLLM:
    """No model configured: every call fails, so the caller writes the deterministic report."""

    name = "none"

    def __init__(self, reason: str = "no LLM configured") -> None:
        self.reason = reason

    def complete_json(self, system: str, prompt: str, schema: dict[str, Any]) -> LLMResult:
        raise LLMError(self.reason)


class OllamaLLM:
    """Ollama's /api/chat with `format=<JSON schema>` and `stream=false`."""

    def __init__(self, host: str, model: str, timeout: float = 120.0, temperature: float = 0.0,
                 num_ctx: int | None = None) -> None:
        import ollama

        self.host = host
        self.model = model
        self.name = f"ollama:{model}"
        self.options: dict[str, Any] = {"temperature": temperature}
        if num_ctx:
            self.options["num_ctx"] = num_ctx
        self._client = ollama.Client(host=host, timeout=timeout)

    def available(self) -> bool:
        """Whether the server answers and has the model (nothing is pulled)."""
        try:
            listed = self._client.list()
        except Exception:  # noqa: BLE001 - unreachable means unavailable
            return False
        names = {m.model for m in listed.models}
        return self.model in names or f"{self.model}:latest" in names

    def complete_json(self, system: str, prompt: str, schema: dict[str, Any]) -> LLMResult:
        import ollama

        started = time.perf_counter()
        try:
            response = self._client.chat(
                model=self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                format=schema,
                stream=False,
                options=self.options,
            )
        except ollama.ResponseError as exc:
            raise LLMError(f"ollama at {self.host} answered {exc.status_code}: {exc.error}") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise LLMError(f"ollama at {self.host} failed: {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - started
        content = (response.message.content or "") if response.message else ""
        data = _parse_json(content, "ollama")
        generation = response.total_duration / 1e9 if response.total_duration else None
        usage = {"prompt_tokens": response.prompt_eval_count, "completion_tokens": response.eval_count}
        return LLMResult(data, self.name, seconds, generation, usage)


class OpenAICompatibleLLM:
    """Any server speaking OpenAI's /v1/chat/completions (vLLM, llama.cpp server, LM Studio...)."""

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 120.0,
                 temperature: float = 0.0) -> None:
        base = base_url.rstrip("/")
        self.url = base + "/chat/completions" if base.endswith("/v1") else base + "/v1/chat/completions"
        self.model = model
        self.name = f"openai:{model}"
        self.temperature = temperature
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def complete_json(self, system: str, prompt: str, schema: dict[str, Any]) -> LLMResult:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            "temperature": self.temperature,
            "stream": False,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "report", "strict": True, "schema": schema}},
        }
        started = time.perf_counter()
        try:
            response = self._client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise LLMError(f"{self.url} failed: {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise LLMError(f"{self.url} answered {response.status_code}: {response.text[:200]}")
        try:
            payload = response.json()
            choice = payload["choices"][0]
            content = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"{self.url} answered without choices[0].message.content") from exc
        if choice.get("finish_reason") == "length":
            raise LLMError(f"{self.url} stopped at the token limit; the JSON is cut short")
        data = _parse_json(content, "openai")
        return LLMResult(data, self.name, seconds, None, payload.get("usage") or {})


class LlamaCppLLM:
    """llama.cpp in process, from a GGUF file on disk (`pip install llama-cpp-python`)."""

    def __init__(self, model_path: str | Path, n_ctx: int = 8192, temperature: float = 0.0) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise LLMError(f"GGUF model file {path} does not exist")
        try:
            from llama_cpp import Llama  # type: ignore[import-not-found]
        except ImportError as exc:
            raise LLMError("llama.cpp backend needs `pip install llama-cpp-python`") from exc
        self.name = f"llamacpp:{path.name}"
        self.temperature = temperature
        try:
            self._llama = Llama(model_path=str(path), n_ctx=n_ctx, verbose=False)
        except Exception as exc:  # noqa: BLE001 - a corrupt or incompatible file
            raise LLMError(f"llama.cpp could not load {path}: {exc}") from exc

    def complete_json(self, system: str, prompt: str, schema: dict[str, Any]) -> LLMResult:
        started = time.perf_counter()
        try:
            response = self._llama.create_chat_completion(
                messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                response_format={"type": "json_object", "schema": schema},
                temperature=self.temperature,
            )
            content = response["choices"][0]["message"]["content"] or ""
        except Exception as exc:  # noqa: BLE001 - any engine failure means no answer
            raise LLMError(f"llama.cpp failed: {exc}") from exc
        seconds = time.perf_counter() - started
        return LLMResult(_parse_json(content, "llamacpp"), self.name, seconds, seconds,
                         response.get("usage") or {})


def create_llm(backend: str = "auto", *, model: str = "", ollama_host: str = "", openai_base_url: str = "",
               openai_api_key: str = "", gguf_path: str = "", timeout: float = 120.0) -> LLM:
    """The configured model; `auto` takes a local Ollama that answers and has `model`, else a
    GGUF file when one is given, else none (the deterministic report)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown LLM backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "none":
        return NoLLM()
    if backend == "ollama":
        if not model:
            raise ValueError("the ollama backend needs a model name")
        return OllamaLLM(ollama_host or "http://127.0.0.1:11434", model, timeout)
    if backend == "openai":
        if not openai_base_url or not model:
            raise ValueError("the openai backend needs a base URL and a model name")
        return OpenAICompatibleLLM(openai_base_url, model, openai_api_key, timeout)
    if backend == "llamacpp":
        return LlamaCppLLM(gguf_path)
    # auto
    tried = []
    if model:
        candidate = OllamaLLM(ollama_host or "http://127.0.0.1:11434", model, timeout)
        if candidate.available():
            return candidate
        tried.append(f"no Ollama with model {model} at {candidate.host}")
    if gguf_path:
        try:
            return LlamaCppLLM(gguf_path)
        except LLMError as exc:
            tried.append(str(exc))
    else:
        tried.append("no GGUF model path")
    return NoLLM("auto: " + "; ".join(tried))
