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
        in_process = names
        if settings.dev_generator_process and "generator" in names:
            in_process = [name for name in names if name != "generator"]
            # The same service token in both processes, as `run all` shares one (none is
            # made where one is configured).
            from logpipe.runner import shared_service_token

            shared = shared_service_token(names).get("service_token")
            if shared:
                os.environ["LOGPIPE_SERVICE_TOKEN"] = shared

        def started() -> None:
            nonlocal generator
            if len(in_process) < len(names):
                # Started once every consumer exists, as `run all` starts it last.
                generator = _start_generator_process(generate)
            print(banner, file=sys.stderr, flush=True)

        generator = None
        try:
            run_services(in_process, overrides, on_started=started)
        finally:
            if generator is not None:
                _stop_process(generator)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()


def _start_generator_process(generate: bool, timeout_s: float = 120.0):
    """`logpipe run generator` as a child; returns once it answers /health (a few seconds of
    imports, during which the services' event loop waits: it runs once, at start)."""
    import subprocess
    import time
    import urllib.error
    import urllib.request

    from logpipe.generator.settings import Settings

    settings = Settings()
    env = dict(os.environ, GENERATOR_AUTOSTART="true" if generate else "false")
    process = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "run", "generator"], env=env)
    url = f"http://{settings.host}:{settings.port}/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the generator process stopped at start (exit code {process.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return process
        except urllib.error.HTTPError:
            return process  # it answers (a dependency it reports on may still be starting)
        except OSError:
            time.sleep(0.2)
    _stop_process(process)
    raise SystemExit(f"the generator process did not answer {url} within {timeout_s:.0f} s")


def _stop_process(process, timeout_s: float = 15.0) -> None:
    import signal
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
