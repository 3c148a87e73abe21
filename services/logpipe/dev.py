"""`logpipe dev` (what `make dev` runs): the whole platform on one machine.

The embedded broker (Tansu) runs as a child process; every service runs in this process on
the embedded stores (chdb, Qdrant Edge, SQLite), with the generator producing logs.
"""

from __future__ import annotations

import os
import sys

from logpipe.core.settings import CommonSettings


def _banner(bootstrap: str, token: str | None, services: list[str]) -> str:
    from logpipe.gateway.settings import Settings as GatewaySettings

    ports = {}
    for name in services:
        module = __import__(f"logpipe.{name}.settings", fromlist=["Settings"])
        ports[name] = module.Settings().port
    gateway = f"http://127.0.0.1:{GatewaySettings().port}"
    lines = [
        "",
        f"logpipe is running: open the dashboard at {gateway}/  (Ctrl-C stops everything)",
        f"  API (gateway)       {gateway}/            (OpenAPI docs: {gateway}/docs)",
    ]
    for name in services:
        if name != "gateway":
            lines.append(f"  {name:<19} http://127.0.0.1:{ports[name]}/health  /stats  /metrics")
    lines.append(f"  Kafka (Tansu)       {bootstrap}")
    if token:
        lines += ["", "  Your admin API token (shown once; it is stored hashed):", f"    {token}",
                  "  Try: curl -H 'Authorization: Bearer <token>' " + gateway + "/api/logs?level=ERROR"]
    else:
        lines += ["", "  An API token already exists (stored hashed, not shown again).",
                  "  New one: .venv/bin/logpipe tokens create --name me --scopes admin"]
    return "\n".join(lines) + "\n"


def _emphasised(banner: str) -> str:
    """The banner's title and API line in bold where stderr is a terminal that takes colour."""
    from logpipe.core.logging import is_terminal

    if not is_terminal(sys.stderr) or os.environ.get("NO_COLOR"):
        return banner
    return "\n".join(f"\x1b[1m{line}\x1b[0m" if line.startswith(("logpipe is running", "  API")) else line
                     for line in banner.split("\n"))


def run_dev(port: int | None = None, partitions: int | None = None, generate: bool = True) -> None:
    # Progress bars of model loading (transformers, huggingface_hub) would scroll the banner away.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from logpipe.core.broker import start_embedded, watch_memory
    from logpipe.core.logging import configure_logging
    from logpipe.runner import SERVICES, run_services, service_available

    settings = CommonSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging("logpipe", settings.log_level, settings.log_format)
    broker = start_embedded(port, partitions)
    watch_memory(broker)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
    try:
        names = [name for name in SERVICES if service_available(name)]
        token = None
        if "gateway" in names:
            from logpipe.tokens import ensure_bootstrap_token

            token = ensure_bootstrap_token(CommonSettings())
        overrides = {"generator": {"autostart": generate}}
        banner = _emphasised(_banner(broker.bootstrap_servers, token, names))
        run_services(names, overrides, on_started=lambda: print(banner, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
