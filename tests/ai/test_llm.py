"""LLM backends against servers that speak the real protocols (see tests/support.py)."""

from __future__ import annotations

import time

import pytest

from support import OllamaServer, OpenAIServer
from logpipe.ai.llm import LlamaCppLLM, LLMError, NoLLM, OllamaLLM, OpenAICompatibleLLM, create_llm
from logpipe.core.broker import free_port

SCHEMA = {"type": "object", "required": ["answer", "pattern_ids"], "additionalProperties": False,
          "properties": {"answer": {"type": "string"}, "pattern_ids": {"type": "array", "items": {"type": "string"}}}}


def fixed(body):
    return {"answer": "disk full", "pattern_ids": ["17"]}


def test_ollama_sends_schema_without_streaming_and_parses_the_answer():
    with OllamaServer(fixed) as server:
        llm = OllamaLLM(server.url, "llama3.1:8b", timeout=10)
        result = llm.complete_json("system words", "user words", SCHEMA)
    assert result.data == {"answer": "disk full", "pattern_ids": ["17"]}
    assert result.model == "ollama:llama3.1:8b"
    assert result.generation_seconds == pytest.approx(2.5)
    assert result.usage == {"prompt_tokens": 812, "completion_tokens": 230}
    [request] = server.requests
    assert request["model"] == "llama3.1:8b"
    assert request["stream"] is False
    assert request["format"] == SCHEMA
    assert request["options"]["temperature"] == 0
    assert request["messages"] == [{"role": "system", "content": "system words"},
                                   {"role": "user", "content": "user words"}]


def test_ollama_unknown_model_is_an_llm_error():
    with OllamaServer(fixed, models=("other:1b",)) as server:
        llm = OllamaLLM(server.url, "llama3.1:8b", timeout=10)
        assert not llm.available()
        with pytest.raises(LLMError, match="404"):
            llm.complete_json("s", "u", SCHEMA)


def test_ollama_text_that_is_not_json_is_an_llm_error():
    with OllamaServer(raw_content="Sure! Here is your summary: ...") as server:
        with pytest.raises(LLMError, match="not JSON"):
            OllamaLLM(server.url, "llama3.1:8b", timeout=10).complete_json("s", "u", SCHEMA)


def test_ollama_timeout_is_an_llm_error_within_the_timeout():
    with OllamaServer(fixed, delay=3) as server:
        started = time.perf_counter()
        with pytest.raises(LLMError, match="Timeout"):
            OllamaLLM(server.url, "llama3.1:8b", timeout=0.5).complete_json("s", "u", SCHEMA)
        assert time.perf_counter() - started < 2.5


def test_ollama_unreachable_is_an_llm_error():
    llm = OllamaLLM(f"http://127.0.0.1:{free_port()}", "llama3.1:8b", timeout=2)
    assert not llm.available()
    with pytest.raises(LLMError):
        llm.complete_json("s", "u", SCHEMA)


def test_openai_compatible_sends_json_schema_and_bearer_token():
    with OpenAIServer(fixed, api_key="k-123") as server:
        llm = OpenAICompatibleLLM(server.url, "qwen2.5", api_key="k-123", timeout=10)
        result = llm.complete_json("sys", "usr", SCHEMA)
    assert result.data["answer"] == "disk full"
    assert result.model == "openai:qwen2.5"
    assert result.usage["total_tokens"] == 1000
    [request] = server.requests
    assert server.headers[0]["authorization"] == "Bearer k-123"
    assert request["response_format"] == {"type": "json_schema",
                                          "json_schema": {"name": "report", "strict": True, "schema": SCHEMA}}
    assert request["stream"] is False
    assert [m["role"] for m in request["messages"]] == ["system", "user"]


def test_openai_base_url_with_v1_suffix_is_accepted():
    with OpenAIServer(fixed) as server:
        assert OpenAICompatibleLLM(server.url + "/v1/", "m").complete_json("s", "u", SCHEMA).data["answer"]


@pytest.mark.parametrize("server_options, message", [
    ({"status": 500}, "500"),
    ({"finish_reason": "length"}, "token limit"),
    ({"api_key": "right"}, "401"),
])
def test_openai_failures_are_llm_errors(server_options, message):
    with OpenAIServer(fixed, **server_options) as server:
        with pytest.raises(LLMError, match=message):
            OpenAICompatibleLLM(server.url, "m", api_key="wrong", timeout=5).complete_json("s", "u", SCHEMA)


def test_openai_timeout_is_an_llm_error():
    with OpenAIServer(fixed, delay=3) as server:
        with pytest.raises(LLMError, match="Timeout"):
            OpenAICompatibleLLM(server.url, "m", timeout=0.5).complete_json("s", "u", SCHEMA)


def test_auto_picks_an_ollama_that_has_the_model_else_none():
    with OllamaServer(fixed) as server:
        assert isinstance(create_llm("auto", model="llama3.1:8b", ollama_host=server.url), OllamaLLM)
        assert isinstance(create_llm("auto", model="mistral:7b", ollama_host=server.url), NoLLM)
    assert isinstance(create_llm("auto", model="llama3.1:8b", ollama_host=f"http://127.0.0.1:{free_port()}"), NoLLM)


def test_none_and_bad_configurations():
    with pytest.raises(LLMError):
        NoLLM().complete_json("s", "u", SCHEMA)
    with pytest.raises(ValueError, match="unknown LLM backend"):
        create_llm("gpt")
    with pytest.raises(ValueError):
        create_llm("openai", model="m")
    with pytest.raises(LLMError, match="does not exist"):
        LlamaCppLLM("/nonexistent/model.gguf")


def test_llamacpp_without_the_package_says_how_to_install(tmp_path):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(LLMError, match="llama-cpp-python"):
            LlamaCppLLM(gguf)
    else:  # pragma: no cover - only where llama-cpp-python is installed
        with pytest.raises(LLMError, match="could not load"):
            LlamaCppLLM(gguf)
