"""What ONNX Runtime's spinning threads cost the embedding model's callers, in one run.

The vectorizer calls the model with a few texts at a time, spaced by the rest of its batch
(decoding, masking, upserting): the cache answers most texts, so calls are small and far apart.
By default ORT's pool threads busy-wait after each run for the next one; `OnnxBackend` turns that
off (`session.intra_op.allow_spinning=0`). This bench runs the same spaced calls on two
sessions of the same model, spinning on (ORT's default, the baseline) and off (shipped),
alternating, and reports the process CPU per text of each and their ratio.

    .venv/bin/python bench/model_spinning.py [--calls 40] [--texts-per-call 8] [--gap-ms 20]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import onnxruntime as ort  # noqa: E402

from logpipe.ai.embeddings import OnnxBackend, bundled_model_dir  # noqa: E402


def backend(export_dir: Path, spinning: bool) -> OnnxBackend:
    model = OnnxBackend(bundled_model_dir(), export_dir, threads=2)
    if spinning:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        model.session = ort.InferenceSession(str(model.onnx_path), options, providers=["CPUExecutionProvider"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--texts-per-call", type=int, default=8)
    parser.add_argument("--gap-ms", type=float, default=20.0, help="the caller's other work between two calls")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    export_dir = Path(tempfile.mkdtemp(prefix="logpipe-bench-onnx-"))
    models = {"spinning (ORT default)": backend(export_dir, True), "no spinning (shipped)": backend(export_dir, False)}
    texts = [f"Database connection timeout after {n}ms to db-orders-{n % 7}.internal:5432 (SQLTimeoutException "
             f"db.pool)" for n in range(args.calls * args.texts_per_call)]
    for model in models.values():
        model.embed(texts[:32])  # warm up
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            started = time.process_time()
            for call in range(args.calls):
                model.embed(texts[call * args.texts_per_call:(call + 1) * args.texts_per_call])
                time.sleep(args.gap_ms / 1000)
            cpu[name].append((time.process_time() - started) / len(texts) * 1000)
    best = {name: round(min(values), 2) for name, values in cpu.items()}
    print(json.dumps({"bench": "model_spinning", "calls": args.calls, "texts_per_call": args.texts_per_call,
                      "gap_ms": args.gap_ms, "cpu_ms_per_text": best,
                      "ratio": round(best["no spinning (shipped)"] / best["spinning (ORT default)"], 2)}))


if __name__ == "__main__":
    main()
