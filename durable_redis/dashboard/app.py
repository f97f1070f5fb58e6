"""The dashboard's ASGI app: Starlette routes, Jinja2 templates, one small vanilla script.

Security model (docs/operations.md):

- **Token.** With ``auth_token`` set, every request needs it: ``Authorization: Bearer <t>``, or
  the ``dr_auth`` cookie, which opening any page once as ``...?token=<t>`` sets (HttpOnly,
  SameSite=Strict) before redirecting to the same page without the token.
- **CSRF.** Actions are POST only and need both a same-origin ``Origin`` (or ``Referer``) when the
  browser sends one and the double-submit token: the ``dr_csrf`` cookie's value in the form's
  ``csrf`` field (compared in constant time).
- **Read-only** refuses every action (403) and the pages show none.
- Responses carry a strict Content-Security-Policy (no inline script), ``X-Frame-Options: DENY``
  and ``Referrer-Policy: same-origin``.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from durable_redis._render import plain
from durable_redis.dashboard import sse, views
from durable_redis.errors import DurableRedisError, InstanceRunningError
from durable_redis.ids import validate_id
from durable_redis.storage.base import InstanceStatus
from durable_redis.storage.job_types import JobState

__all__ = ["create_app"]

HERE = Path(__file__).resolve().parent
AUTH_COOKIE = "dr_auth"
CSRF_COOKIE = "dr_csrf"
PAGE_SIZE = 50
_MAX_FORM_BYTES = 256 * 1024
_JOBS_MAX = 1000  # rows of the jobs page ("show more" doubles up to this)
_JOB_ACTIONS = ("cancel-job", "retry-job")
_SCHEDULE_ACTIONS = ("pause-schedule", "resume-schedule", "trigger-schedule")
_QUEUE_ACTIONS = ("pause-queue", "resume-queue", "drain-queue")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class _Source:
    """The store and client, opened lazily on first use (a mounted sub-app gets no lifespan)."""

    def __init__(self, source: Any, namespace: str) -> None:
        self._source = source
        self._namespace = namespace
        self._client: Any = None
        self._owns = False
        self._lock = anyio.Lock()

    async def client(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    from durable_redis.client import Client

                    if isinstance(self._source, str):
                        client = Client.from_url(self._source, namespace=self._namespace)
                        self._owns = True
                    else:
                        client = self._source
                    await client._ensure_initialized()
                    self._client = client
        return self._client

    async def store(self) -> Any:
        return (await self.client()).store

    async def close(self) -> None:
        if self._client is not None and self._owns:
            await self._client.close()
        self._client = None


def _digest(token: str) -> str:
    return hashlib.sha256(b"durable-redis-dashboard:" + token.encode()).hexdigest()


def _ms_from_local(text: str | None) -> int | None:
    """``datetime-local`` input (UTC) -> ms; None if empty or unreadable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def create_app(
    source: Any,
    *,
    namespace: str = "default",
    read_only: bool = False,
    auth_token: str | None = None,
    poll_interval: float = 2.0,
) -> Starlette:
    """The dashboard as an ASGI app.

    ``source`` is a Redis URL or a :class:`~durable_redis.Client` (its store is used). Mount it
    anywhere: ``fastapi_app.mount("/durable", create_app(url, auth_token=...))``.
    """
    if auth_token is not None and len(auth_token) < 8:
        raise DurableRedisError("the dashboard auth token must be at least 8 characters")
    src = _Source(source, namespace)
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = views.fmt_age
    env.filters["when"] = views.fmt_ms
    env.filters["q"] = lambda s: quote(str(s), safe="")
    auth_digest = _digest(auth_token) if auth_token else None

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        template = env.get_template(name)
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        ctx = {
            "base": base(request),
            "namespace": namespace,
            "read_only": read_only,
            "csrf": csrf,
            "poll_ms": int(poll_interval * 1000),
            "msg": request.query_params.get("msg", ""),
            "page": name.removesuffix(".html"),
            "statuses": [s.value for s in InstanceStatus],
            "job_statuses": [s.value for s in JobState],
            **context,
        }
        if request.query_params.get("partial") == "1" and "live" in template.blocks:
            body = "".join(template.blocks["live"](template.new_context(ctx)))
        else:
            body = template.render(ctx)
        response = HTMLResponse(body, status_code=status)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(
                CSRF_COOKIE, csrf, httponly=True, samesite="strict", path=base(request) or "/"
            )
        return response

    def secured(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if auth_digest is not None:
                given = request.query_params.get("token")
                if given is not None and request.method == "GET":
                    if not hmac.compare_digest(_digest(given), auth_digest):
                        return _denied(401, "wrong token")
                    query = {k: v for k, v in request.query_params.items() if k != "token"}
                    target = request.url.path + (f"?{urlencode(query)}" if query else "")
                    response: Response = RedirectResponse(target, status_code=303)
                    response.set_cookie(
                        AUTH_COOKIE,
                        auth_digest,
                        httponly=True,
                        samesite="strict",
                        path=base(request) or "/",
                    )
                    return response
                if not _authorised(request, auth_digest):
                    return _denied(401, "this dashboard needs its token: open it as ?token=...")
            try:
                response = await handler(request)
            except DurableRedisError as exc:
                response = _denied(400, f"{type(exc).__name__}: {exc}")
            _harden(response)
            return response

        return endpoint

    # -- pages ---------------------------------------------------------------------------------
    async def overview(request: Request) -> Response:
        data = await views.overview_page(await src.store())
        return render(request, "overview.html", data)

    async def instances(request: Request) -> Response:
        q = request.query_params
        status = _choice(q.get("status"), InstanceStatus)
        data = await views.instances_page(
            await src.store(),
            status=status,
            name=q.get("name") or None,
            prefix=(q.get("q") or "").strip() or None,
            created_after_ms=_ms_from_local(q.get("after")),
            created_before_ms=_ms_from_local(q.get("before")),
            cursor=q.get("cursor") or None,
            limit=PAGE_SIZE,
        )
        filters = {k: q.get(k, "") for k in ("status", "name", "q", "after", "before")}
        next_query = None
        if data["next_cursor"]:
            next_query = urlencode(
                {**{k: v for k, v in filters.items() if v}, "cursor": data["next_cursor"]}
            )
        return render(
            request,
            "instances.html",
            {**data, "filters": filters, "next_query": next_query, "paged": bool(q.get("cursor"))},
        )

    async def instance(request: Request) -> Response:
        instance_id = request.query_params.get("id", "")
        if not instance_id:
            return RedirectResponse(f"{base(request)}/instances", status_code=303)
        execution = request.query_params.get("execution")
        data = await views.instance_page(
            await src.store(),
            instance_id,
            int(execution) if execution and execution.isdigit() else None,
        )
        return render(request, "instance.html", data, status=200 if data["found"] else 404)

    async def stream(request: Request) -> Response:

        instance_id = validate_id(request.path_params["instance_id"])
        after = sse.start_offset(
            request.headers.get("last-event-id"), request.query_params.get("from")
        )
        if after is None:
            return _denied(400, "from / Last-Event-ID must be a stream offset such as 0 or 17-0")
        client = await src.client()
        if await client.store.get_instance(instance_id) is None:
            return _denied(404, f"no instance {instance_id!r}")
        return StreamingResponse(
            sse.events(client.store, client.codec, instance_id, after),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},  # proxies must not buffer it
        )

    async def jobs(request: Request) -> Response:
        q = request.query_params
        status = _choice(q.get("status"), JobState)
        limit = min(_JOBS_MAX, max(1, _int_or(q.get("limit"), PAGE_SIZE * 2)))
        data = await views.jobs_page(
            await src.store(), status=status, name=q.get("name") or None, limit=limit
        )
        filters = {k: q.get(k, "") for k in ("status", "name")}
        more = None
        if len(data["rows"]) == limit and limit < _JOBS_MAX:
            wanted = {k: v for k, v in filters.items() if v}
            more = urlencode({**wanted, "limit": min(_JOBS_MAX, limit * 2)})
        return render(request, "jobs.html", {**data, "filters": filters, "more_query": more})

    async def job(request: Request) -> Response:

        job_id = request.query_params.get("id", "")
        if not job_id:
            return RedirectResponse(f"{base(request)}/jobs", status_code=303)
        data = await views.job_page(await src.store(), validate_id(job_id, "job id"))
        return render(request, "job.html", data, status=200 if data["found"] else 404)

    async def schedules(request: Request) -> Response:
        data = await views.schedules_page(await src.client())
        return render(request, "schedules.html", data)

    async def queues(request: Request) -> Response:
        data = await views.queues_page(await src.client())
        return render(request, "queues.html", data)

    async def workers(request: Request) -> Response:
        data = await views.workers_page(await src.store())
        return render(request, "workers.html", data)

    async def api_overview(request: Request) -> Response:
        data = await views.overview_page(await src.store())
        return JSONResponse(plain(data))

    async def api_workers(request: Request) -> Response:
        data = await views.workers_page(await src.store())
        return JSONResponse(plain(data))

    async def metrics(request: Request) -> Response:
        try:
            from durable_redis.dashboard.exporter import render_metrics

            data = await views.overview_page(await src.store())
            body = render_metrics(data)
        except ImportError:
            return _denied(404, "/metrics needs prometheus_client (the 'metrics' extra)")
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(request: Request) -> Response:
        store = await src.store()
        return JSONResponse({"ok": True, "server_time_ms": await store.server_time_ms()})

    # -- actions -------------------------------------------------------------------------------
    async def action(request: Request) -> Response:
        kind = request.path_params["kind"]
        if read_only:
            return _denied(403, "the dashboard is read-only")
        if not _same_origin(request):
            return _denied(403, "cross-origin request refused")
        form = await _form(request)
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(form.get("csrf", ""), cookie):
            return _denied(403, "missing or wrong CSRF token; reload the page")
        client = await src.client()
        if kind in _JOB_ACTIONS or kind in _SCHEDULE_ACTIONS:
            return await job_or_schedule_action(request, client, kind, form)
        if kind in _QUEUE_ACTIONS:
            return await queue_action(request, client, kind, form.get("queue", ""))
        instance_id = form.get("instance_id", "")
        if kind == "cancel":
            await client.cancel(instance_id, form.get("reason") or "cancelled from the dashboard")
            msg = "cancellation requested"
        elif kind == "raise-event":
            text = form.get("data", "").strip()
            try:
                data = json.loads(text) if text else None
            except json.JSONDecodeError as exc:
                return _back(request, instance_id, f"event data is not valid JSON: {exc}")
            await client.raise_event(instance_id, form.get("event", ""), data)
            msg = f"event {form.get('event', '')!r} sent"
        elif kind == "rerun":
            msg = await views.rerun(await src.store(), instance_id)
        elif kind == "reset":
            msg = await _reset(request, client, instance_id, form)
        elif kind == "purge":
            try:
                deleted = await client.purge(instance_id, force=form.get("force") == "1")
            except InstanceRunningError as exc:
                return _back(request, instance_id, str(exc))
            target = f"{base(request)}/instances?" + urlencode(
                {"msg": f"purged {deleted} instance(s)"}
            )
            return RedirectResponse(target, status_code=303)
        else:
            return _denied(404, f"no action {kind!r}")
        return _back(request, instance_id, msg)

    async def job_or_schedule_action(
        request: Request, client: Any, kind: str, form: dict[str, str]
    ) -> Response:
        """Cancel / retry a job, pause / resume / trigger a schedule; back to its page with
        what happened (a refusal, such as retrying a running job, is said there too)."""
        if kind in _JOB_ACTIONS:
            job_id = form.get("job_id", "")
            try:
                if kind == "cancel-job":
                    before = await client.cancel_job(job_id, form.get("reason") or "")
                    msg = (
                        "cancelled"
                        if not before.is_terminal
                        else f"the job had already ended ({before.value}); left alone"
                    )
                else:
                    await client.retry_job(job_id)
                    msg = "queued again (from its first attempt)"
            except DurableRedisError as exc:
                msg = f"{type(exc).__name__}: {exc}"
            return _back(request, job_id, msg, page="job")
        name = form.get("schedule", "")
        try:
            if kind == "pause-schedule":
                await client.pause_schedule(name)
                msg = f"schedule {name!r} paused"
            elif kind == "resume-schedule":
                await client.resume_schedule(name)
                msg = f"schedule {name!r} resumed (from its next tick)"
            else:
                run = await client.trigger_schedule(name)
                if isinstance(run, str):  # an orchestration schedule: the instance started
                    return _back(request, run, f"schedule {name!r} triggered")
                return _back(request, run.id, f"schedule {name!r} triggered", page="job")
        except DurableRedisError as exc:
            msg = f"{type(exc).__name__}: {exc}"
        target = f"{base(request)}/schedules?" + urlencode({"msg": msg})
        return RedirectResponse(target, status_code=303)

    async def queue_action(request: Request, client: Any, kind: str, name: str) -> Response:
        """Pause / resume / drain a queue (drain: pause, and say what still runs; the page
        shows when it reaches 0); back to the Queues page with what happened."""
        try:
            if kind == "pause-queue":
                was = await client.pause_queue(name)
                msg = f"queue {name!r} " + ("was paused already" if was else "paused")
            elif kind == "resume-queue":
                was = await client.resume_queue(name)
                msg = f"queue {name!r} " + ("resumed" if was else "was not paused")
            else:
                status = await client.drain_queue(name)
                state = "drained" if status.running == 0 else f"{status.running} still running"
                msg = f"queue {name!r} paused for draining: {state}"
        except DurableRedisError as exc:
            msg = f"{type(exc).__name__}: {exc}"
        target = f"{base(request)}/queues?" + urlencode({"msg": msg})
        return RedirectResponse(target, status_code=303)

    def _back(request: Request, item_id: str, msg: str, page: str = "instance") -> Response:
        query = urlencode({"id": item_id, "msg": msg})
        return RedirectResponse(f"{base(request)}/{page}?{query}", status_code=303)

    routes = [
        Route("/", secured(overview), name="overview"),
        Route("/instances", secured(instances), name="instances"),
        Route("/instance", secured(instance), name="instance"),
        Route("/instances/{instance_id:path}/stream", secured(stream), name="stream"),
        Route("/jobs", secured(jobs), name="jobs"),
        Route("/job", secured(job), name="job"),
        Route("/schedules", secured(schedules), name="schedules"),
        Route("/queues", secured(queues), name="queues"),
        Route("/workers", secured(workers), name="workers"),
        Route("/api/overview", secured(api_overview)),
        Route("/api/workers", secured(api_workers)),
        Route("/healthz", secured(healthz)),
        Route("/metrics", secured(metrics)),
        Route("/actions/{kind}", secured(action), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await src.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.source = src
    # Mounted in another app, this one gets no lifespan: call ``await app.state.aclose()`` from
    # the outer app's shutdown to close the Redis connection it opened.
    app.state.aclose = src.close
    return app


async def _reset(request: Request, client: Any, instance_id: str, form: dict[str, str]) -> str:
    """``client.reset`` from the instance page's form (docs/deploying.md, "Reset"): what it
    did, or why it refused (a running instance, a point with work in flight)."""
    raw = form.get("point", "before-failure").strip()
    point: int | str = int(raw) if raw.isdigit() else raw
    host = request.client.host if request.client is not None else "?"
    try:
        info = await client.reset(
            instance_id, point, reason=form.get("reason", ""), by=f"dashboard ({host})"
        )
    except DurableRedisError as exc:
        return f"not reset: {type(exc).__name__}: {exc}"
    return (
        f"reset: execution {info.execution_id} runs from event {info.from_event} "
        f"of execution {info.from_execution}"
    )


def _int_or(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _choice(value: str | None, options: type[enum.StrEnum]) -> str | None:
    """A filter's value if it is one of ``options``, else None (no filter)."""
    return value if value and value in {o.value for o in options} else None


def _authorised(request: Request, digest: str) -> bool:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return hmac.compare_digest(_digest(header[7:].strip()), digest)
    return hmac.compare_digest(request.cookies.get(AUTH_COOKIE, ""), digest)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True  # no header (some clients): the CSRF token decides
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def _denied(status: int, message: str) -> Response:
    return HTMLResponse(
        f"<!doctype html><title>{status}</title><p class=error>{_escape(message)}</p>",
        status_code=status,
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _harden(response: Response) -> None:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
