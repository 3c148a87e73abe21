"""A local server speaking text-embeddings-inference's HTTP shapes, for the TEI contract tests."""

from __future__ import annotations

import threading

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from support import wait_until


def tei_app(backend, requests_seen: list, fail: dict):
    """TEI's `POST /embed` ({"inputs": str | [str], "normalize", "truncate"} -> [[float]]) and `GET /info`."""
    app = FastAPI()

    @app.get("/info")
    async def info():
        return {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "model_type": {"embedding": {"pooling": "mean"}},
                "max_input_length": 256, "max_client_batch_size": 32}

    @app.post("/embed")
    async def embed(request: Request):
        body = await request.json()
        requests_seen.append(body)
        if fail.get("status"):
            return JSONResponse({"error": "model overloaded", "error_type": "Overloaded"}, status_code=fail["status"])
        inputs = body.get("inputs")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            return JSONResponse({"error": "inputs must be a string or a list of strings",
                                 "error_type": "Validation"}, status_code=422)
        if len(inputs) > 32:
            return JSONResponse({"error": "batch size 33 > maximum allowed batch size 32",
                                 "error_type": "Validation"}, status_code=413)
        return backend.embed(inputs).tolist()

    return app


@pytest.fixture
def tei_server(embedding_backend):
    import uvicorn

    from logpipe.core.broker import free_port

    seen: list = []
    fail: dict = {}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(tei_app(embedding_backend, seen, fail), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, interval=0.02, message="TEI test server did not start")
    yield {"url": f"http://127.0.0.1:{port}", "requests": seen, "fail": fail}
    server.should_exit = True
    thread.join(timeout=5)
