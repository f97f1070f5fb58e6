"""Running workers as OS processes: ``run_worker("module:app", url, options, processes=N)``.

Each process runs one :class:`Worker` (``python -m durable_redis.runtime MODULE:APP ...``). The
parent forwards SIGTERM/SIGINT to its children, waits for them and returns the worst exit code.
With ``processes=1`` the worker runs in the calling process (the main thread, so it handles the
signals itself).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, cast

import anyio

from durable_redis.core import App
from durable_redis.errors import ConfigurationError, DurableRedisError
from durable_redis.runtime import _bridge
from durable_redis.runtime.logs import LOG_FORMATS, configure_logging
from durable_redis.runtime.options import WorkerOptions
from durable_redis.runtime.worker import Worker
from durable_redis.storage.base import Store

__all__ = ["load_app", "main", "open_store", "run_worker", "serve"]

logger = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "default"


def load_app(app_ref: str) -> Any:
    """Import ``"package.module:attribute"`` (the current directory is importable, like uvicorn).

    ConfigurationError if it is missing or is not an ``App`` (say, the orchestration's name
    where the App's belongs): the worker refuses to start rather than crash every turn.
    """
    module_name, sep, attr = app_ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"expected 'module:app', got {app_ref!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attr!r}") from None
    try:
        _bridge.check_app(obj, app_ref)
    except ConfigurationError as exc:
        apps = [name for name, value in vars(module).items() if _is_app(value)]
        if apps:
            suggestions = " or ".join(repr(f"{module_name}:{name}") for name in sorted(apps))
            raise ConfigurationError(f"{exc}; did you mean {suggestions}?") from None
        raise
    return obj


def _is_app(value: Any) -> bool:
    try:
        _bridge.check_app(value)
    except ConfigurationError:
        return False
    return True


def open_store(redis_url: str, namespace: str = DEFAULT_NAMESPACE) -> Any:
    from durable_redis.storage import RedisStore

    return RedisStore.from_url(redis_url, namespace=namespace)


async def serve(
    app: App,
    redis_url: str,
    options: WorkerOptions | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    handle_signals: bool = True,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    burst: bool = False,
) -> None:
    """Run one worker in this process until it is stopped (SIGTERM/SIGINT), or with ``burst``
    until the namespace is idle (``durable_redis.runtime.burst``).

    ``metrics_port``: serve Prometheus metrics on ``metrics_host:metrics_port`` (runtime.metrics).
    """
    store = open_store(redis_url, namespace)
    metrics_server = None
    try:
        if metrics_port is None:
            worker = Worker(app, store, options)
        else:
            from durable_redis.runtime.metrics import MeteredStore, WorkerMetrics, serve_metrics

            metrics = WorkerMetrics()
            worker = Worker(app, cast(Store, MeteredStore(store, metrics)), options)
            metrics.bind(worker)
            metrics_server = serve_metrics(metrics, metrics_port, metrics_host)
        await worker.run(handle_signals=handle_signals, burst=burst)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        _write_stats(store)
        with anyio.CancelScope(shield=True):
            await store.close()


def _write_stats(store: Any) -> None:
    """Script calls by name (``RedisStore.calls``) to ``$DURABLE_REDIS_STATS_FILE``, if set
    (the benchmark harness counts wasted fetches per unit of work with them)."""
    path = os.environ.get("DURABLE_REDIS_STATS_FILE")
    if path:
        with contextlib.suppress(OSError), open(path, "w") as f:
            json.dump(dict(getattr(store, "calls", {})), f)


def uvloop_enabled() -> bool:
    """uvloop runs the worker's event loop when it is installed (``durable-redis[fast]``) and
    ``DURABLE_REDIS_UVLOOP`` is not ``0``."""
    if os.environ.get("DURABLE_REDIS_UVLOOP", "1") == "0":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


#: gen0 threshold of a worker process (CPython's default: 700); see tune_gc
WORKER_GC_GEN0 = 10_000


def tune_gc() -> None:
    """Garbage collection for a worker process, once its app is imported.

    ``gc.freeze()`` moves everything alive then (modules, the app, the store) out of the
    collector's sight, so no later collection walks it again; a gen0 threshold of
    ``WORKER_GC_GEN0`` net allocations (default 700) collects an allocation-heavy turn loop
    14x less often, and so promotes far fewer short-lived objects into gen1/gen2. In
    benchmarks/ab_trees.py many_orch, a worker spent ~54 µs of CPU per orchestration in the
    collector with the defaults, ~26 µs so. Cycles are still collected; only less often.
    ``DURABLE_REDIS_GC=default`` keeps CPython's settings. Only the worker entry points do this
    (``durable-redis worker``, ``python -m durable_redis.runtime``, ``run_worker``): a worker
    embedded in your own process (``Worker.run``, ``serve``) leaves your GC alone.
    """
    if os.environ.get("DURABLE_REDIS_GC", "") == "default":
        return
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, WORKER_GC_GEN0), gen1, gen2)


def run_event_loop(fn: Any) -> None:
    """``anyio.run(fn)`` on asyncio, with uvloop when :func:`uvloop_enabled`."""
    anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": uvloop_enabled()})


def options_to_json(options: WorkerOptions) -> str:
    return json.dumps(dataclasses.asdict(options))


def options_from_json(text: str) -> WorkerOptions:
    fields = {f.name for f in dataclasses.fields(WorkerOptions)}
    raw = json.loads(text)
    if not isinstance(raw, dict) or set(raw) - fields:
        raise ConfigurationError(f"bad worker options: {text!r}")
    return WorkerOptions(**raw)


def worker_command(
    app_ref: str,
    redis_url: str,
    options: WorkerOptions | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    log_level: str | None = None,
    log_format: str | None = None,
    burst: bool = False,
) -> list[str]:
    """The argv of one worker process (``python -m durable_redis.runtime ...``)."""
    cmd = [
        sys.executable,
        "-m",
        "durable_redis.runtime",
        app_ref,
        "--redis-url",
        redis_url,
        "--namespace",
        namespace,
    ]
    if options is not None:
        cmd += ["--options", options_to_json(options)]
    if log_level:
        cmd += ["--log-level", log_level]
    if log_format:
        cmd += ["--log-format", log_format]
    if burst:
        cmd.append("--burst")
    return cmd


def run_worker(
    app_ref: str,
    redis_url: str,
    options: WorkerOptions | None = None,
    *,
    processes: int = 1,
    namespace: str = DEFAULT_NAMESPACE,
    log_level: str | None = None,
    log_format: str | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    burst: bool = False,
) -> int:
    """Run ``processes`` worker processes for the app at ``app_ref``; block until they exit.

    ``burst``: each worker exits (code 0) once the namespace is idle (``runtime.burst``).

    With ``metrics_port`` each process serves Prometheus metrics, on ``metrics_port + i``.

    SIGTERM/SIGINT are forwarded to every child (each shuts down gracefully; a second signal
    makes them hand back their work at once). ``log_level`` and ``log_format`` (``"text"`` or
    ``"json"``) configure the children's logging; with one process, the caller's applies.
    Returns 0 if every worker exited cleanly, else the first non-zero exit code.
    """
    if processes < 1:
        raise ConfigurationError(f"processes must be >= 1, got {processes}")
    if processes == 1:
        app = load_app(app_ref)
        tune_gc()
        run_event_loop(
            lambda: serve(
                app,
                redis_url,
                options,
                namespace=namespace,
                metrics_port=metrics_port,
                metrics_host=metrics_host,
                burst=burst,
            )
        )
        return 0
    if options is not None and options.worker_id is not None:
        raise ConfigurationError("worker_id cannot be shared by several processes")
    load_app(app_ref)  # fail fast, in the parent, on a bad reference
    children: list[subprocess.Popen[bytes]] = []
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        for child in children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)

    previous = {}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, forward)
    # The URL may carry a password: hand it to the children in their environment, never in
    # their argv (which every local user can read in /proc/<pid>/cmdline).
    cmd = worker_command(
        app_ref,
        redis_url,
        options,
        namespace=namespace,
        log_level=log_level,
        log_format=log_format,
        burst=burst,
    )
    at = cmd.index("--redis-url")
    del cmd[at : at + 2]
    env = {**os.environ, "REDIS_URL": redis_url}
    try:
        for i in range(processes):
            metrics = []
            if metrics_port is not None:
                metrics = ["--metrics-port", str(metrics_port + i), "--metrics-host", metrics_host]
            children.append(
                subprocess.Popen(
                    cmd + metrics,
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches them only through us, once
                )
            )
        codes = [_wait(child) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        if in_main:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    bad = [c for c in codes if c != 0]
    if received and all(c in (0, -signal.SIGTERM, -signal.SIGINT) for c in codes):
        return 0
    return bad[0] if bad else 0


def _wait(child: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            time.sleep(0.01)


# -- ``python -m durable_redis.runtime`` ---------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m durable_redis.runtime", description="Run one durable_redis worker."
    )
    parser.add_argument("app", help="the App to serve, as 'module:attribute'")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument(
        "--namespace", default=os.environ.get("DURABLE_REDIS_NAMESPACE", DEFAULT_NAMESPACE)
    )
    parser.add_argument("--options", default=None, help="WorkerOptions as a JSON object")
    parser.add_argument("--log-level", default=os.environ.get("DURABLE_REDIS_LOG_LEVEL", "INFO"))
    parser.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="text lines, or one JSON object per line (default: $DURABLE_REDIS_LOG_FORMAT)",
    )
    parser.add_argument(
        "--burst", action="store_true", help="exit once the namespace is idle (runtime.burst)"
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level.upper(), args.log_format, pid=True)
    if not args.redis_url:
        parser.error("no Redis URL: pass --redis-url or set REDIS_URL")
    options = options_from_json(args.options) if args.options else None
    try:
        app = load_app(args.app)
    except ConfigurationError as exc:
        logger.error("worker not started: %s", exc)
        return 1
    tune_gc()
    try:
        run_event_loop(
            lambda: serve(
                app,
                args.redis_url,
                options,
                namespace=args.namespace,
                metrics_port=args.metrics_port,
                metrics_host=args.metrics_host,
                burst=args.burst,
            )
        )
    except DurableRedisError as exc:
        logger.error("worker stopped: %s: %s", type(exc).__name__, exc)
        logging.shutdown()
        return 1
    logging.shutdown()
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        # A sync activity that ignored its cancellation is still running; its item was handed
        # back already, so do not wait for it.
        os._exit(0)
    return 0
