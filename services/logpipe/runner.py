"""Start services: one per process (`logpipe run ingest`, as Kubernetes does) or every one
in this process (`logpipe run all`, `logpipe dev`), each as its own uvicorn server."""

from __future__ import annotations

import asyncio
import importlib
import logging
import secrets
import signal
from typing import Any, Callable

# Service name -> module; each module has app.create_app(settings) and settings.Settings.
# The order is the start order of `run all` (producers of data last).
SERVICES = ("ingest", "embedder", "vectorizer", "analyzer", "gateway", "generator")

log = logging.getLogger("logpipe.runner")


def service_available(name: str) -> bool:
    try:
        importlib.import_module(f"logpipe.{name}.app")
        return True
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"logpipe.{name}"):
            return False
        raise


def load_service(name: str) -> tuple[Callable[..., Any], type]:
    app_module = importlib.import_module(f"logpipe.{name}.app")
    settings_module = importlib.import_module(f"logpipe.{name}.settings")
    return app_module.create_app, settings_module.Settings


async def serve(apps: list[tuple[str, Any, Any]], stop: asyncio.Event | None = None,
                on_started: Callable[[], None] | None = None) -> None:
    """Run several ASGI apps, one uvicorn server each, in this event loop, until stopped."""
    import uvicorn

    # Several servers in one process would each log uvicorn's four startup and four shutdown
    # lines; one "ready" line per service says the same. Warnings and errors still show.
    several = len(apps) > 1
    urls = {name: f"http://{settings.host}:{settings.port}/" for name, _, settings in apps}
    if several:
        logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.getLogger().level))
    servers = []
    for name, app, settings in apps:
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                                access_log=False, lifespan="on", ws_ping_interval=20)
        server = uvicorn.Server(config)
        # One signal handler for the whole process (below), not one per server.
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        servers.append((name, server))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    tasks = []
    # Start in order so that a consumer exists before the generator produces.
    for name, server in servers:
        task = asyncio.create_task(server.serve(), name=f"serve-{name}")
        tasks.append(task)
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if task.done():
            stop.set()
            break
        if several:
            logging.getLogger(f"logpipe.{name}").info("ready", extra={"url": urls[name]})
    if on_started is not None and all(server.started for _, server in servers):
        on_started()
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for _, server in reversed(servers):
        server.should_exit = True
    results = await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    for (name, _), result in zip(servers, results):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("service %s stopped with %r", name, result)
    failed = [name for (name, server), task in zip(servers, tasks) if not server.started]
    if failed:
        raise SystemExit(f"could not start: {', '.join(failed)} (see the log above)")


def shared_service_token(names: list[str]) -> dict[str, str]:
    """Services in one process call each other with one service token; without a configured one
    they share a fresh random one, so `run all` keeps working wherever it listens."""
    from logpipe.core.settings import ServiceSettings

    if len(names) > 1 and not ServiceSettings().service_token.get_secret_value():
        return {"service_token": secrets.token_urlsafe(32)}
    return {}


def run_services(names: list[str], overrides: dict[str, dict[str, Any]] | None = None,
                 on_started: Callable[[], None] | None = None) -> None:
    from logpipe.core import tracing
    from logpipe.core.logging import configure_logging
    from logpipe.core.settings import CommonSettings

    common = CommonSettings()
    process_name = "logpipe" if len(names) > 1 else names[0]
    configure_logging(process_name, common.log_level, common.log_format)
    tracing.configure(process_name)
    shared_token = shared_service_token(names)
    apps = []
    for name in names:
        create_app, settings_cls = load_service(name)
        settings = settings_cls(**{**shared_token, **(overrides or {}).get(name, {})})
        apps.append((name, create_app(settings), settings))
    try:
        asyncio.run(serve(apps, on_started=on_started))
    finally:
        tracing.shutdown()
