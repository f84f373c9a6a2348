"""``idr serve``: the HTTP service (FastAPI; OpenAPI at ``/docs`` and ``/openapi.json``).

- ``POST /v1/resolve`` ``{source, source_id, data: {attribute: value}, persist}``: the entity
  the record belongs to (``found``), or a new one (``new``, or ``review`` when uncertain pairs
  wait for a reviewer). Unless ``persist`` is false the record is committed to the inbox before
  the answer, so the next batch run ingests it.
- ``GET /v1/entities/{entity_id}``: the golden profile and the member records (404: none).
- ``GET /health``: state versions and size (503 until a state is loaded); ``GET /metrics``:
  Prometheus metrics as text (latency histogram, outcomes by status, errors by kind).

Every error is ``{"error": message}``: 400 for a request the service refuses (validation
included: it names the field; a body over ``serve.max_payload_bytes``), 404, 503 when the
state or the inbox is unavailable. The OpenAPI schema lists exactly these (FastAPI's default
422 is never sent, so it is left out), and ``tests/test_realtime_contract.py`` fuzzes it.

The published tables are re-read in the background when a run commits newer versions; the
service keeps answering from the previous state meanwhile.

Resolving one record costs well under a millisecond of Python: requests are resolved on the
event loop itself, one after the other, and a request waiting for its inbox commit holds no
thread. (Resolved on a thread pool, eight concurrent requests fought for the interpreter lock.)
A record with more than 200 candidates is scored by DuckDB, also on the loop: a few
milliseconds during which other requests wait.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resolution.config import Config
from resolution.realtime.inbox import Inbox, inbox_row
from resolution.realtime.resolver import (
    MAX_TEXT,
    RequestError,
    Resolution,
    Resolver,
    UnavailableError,
)
from resolution.realtime.scorer import OnlineScorer
from resolution.realtime.state import StateHolder

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


# A source or source_id: 1 to MAX_TEXT characters, not only blanks. Pydantic checks the lengths;
# the resolver checks blanks (its message names the field), so the pattern is stated, not run.
_NAME = {"min_length": 1, "max_length": MAX_TEXT, "json_schema_extra": {"pattern": r"\S"}}
# A data value: text (up to MAX_TEXT characters), a number, or null (left out); the names are
# the inbox source's attributes, filled in per config by _openapi.
_DATA_VALUE = {"anyOf": [{"type": "string", "maxLength": MAX_TEXT}, {"type": "number"}, {"type": "null"}]}


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="the system the record comes from, e.g. checkout (not blank)", **_NAME)
    source_id: str = Field(description="the record's id in that system (not blank)", **_NAME)
    data: dict[str, Any] = Field(
        description="standard attribute -> raw value, e.g. {\"email\": \"Ann@X.org\"}; at least one "
        "identifier or blocking attribute, each value valid for its kind",
        json_schema_extra={"additionalProperties": _DATA_VALUE},
    )
    persist: bool = Field(True, description="commit the record to the inbox (false: only look up)")


class ErrorAnswer(BaseModel):
    error: str = Field(description="what went wrong (a 400 names the field at fault)")


class MatchAnswer(BaseModel):
    record_key: str = Field(description="the matched record (source:source_id)")
    source: str
    entity_id: str = Field(description="the matched record's entity")
    match_probability: float | None = Field(
        description="the model's probability (1.0 for the record itself; null: not scored)"
    )
    rule: str = Field(description="the identifier rule that links them, model, or accepted (by a reviewer)")
    status: Literal["link", "review"]


class ResolveAnswer(BaseModel):
    record_key: str = Field(description="the key the batch will give the record")
    entity_id: str = Field(description="the entity the record belongs to (new: its own record key)")
    status: Literal["found", "review", "new"] = Field(
        description="found | review (new, with pairs waiting for a reviewer) | new"
    )
    is_new: bool
    confidence: float = Field(description="the strongest link's probability (found), review pair's (review), 0 (new)")
    matched: list[MatchAnswer]
    stored: bool = Field(description="this call committed the record to the inbox")
    known: bool = Field(description="the record was already known (an earlier call or a batch record)")
    ignored: list[str] = Field(description="junk values left out, e.g. email:excluded")
    latency_ms: float = Field(description="time spent in the service")


class EntityAnswer(BaseModel):
    entity_id: str
    profile: dict[str, Any] | None = Field(description="the golden profile (null: pending, no batch run yet)")
    pending: bool = Field(description="only records accepted since the last batch run")
    records: list[dict[str, Any]] = Field(description="the member records, as the batch standardized them")


class LoadedState(BaseModel):
    versions: dict[str, int] = Field(description="the version of each published table read")
    records: int
    loaded_at: datetime


class HealthAnswer(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: the last refresh failed (see error)")
    state: LoadedState | None = Field(description="null until a state is loaded (then 503)")
    pending_records: int = Field(description="accepted records the next batch run will ingest")
    error: str | None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("idr_resolve_latency_seconds", "POST /v1/resolve latency", ["status"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.outcomes = Counter("idr_resolve_total", "resolve answers by status", ["status"], registry=self.registry)
        self.errors = Counter("idr_errors_total", "errors by kind", ["kind"], registry=self.registry)
        self.records = Gauge("idr_state_records", "live records in the loaded state", registry=self.registry)
        self.pending = Gauge("idr_pending_records", "accepted records not yet in the state", registry=self.registry)
        self.reloads = Counter("idr_state_reloads_total", "states loaded", registry=self.registry)
        self.commit_seconds = Histogram("idr_inbox_commit_seconds", "inbox commit time", buckets=LATENCY_BUCKETS,
                                        registry=self.registry)
        self.commit_rows = Histogram("idr_inbox_commit_rows", "records per inbox commit",
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1000), registry=self.registry)


@dataclass
class _Slot:
    """One record's resolution and inbox commit, shared by requests for the same record."""

    answer: Resolution | None = None
    future: Future | None = None


class ResolveService:
    """State, resolver and inbox of one service; the HTTP layer is :func:`create_app`."""

    def __init__(self, config: Config):
        self.config = config
        self.metrics = Metrics()
        self.holder = StateHolder(config)
        self.resolver = Resolver(config, OnlineScorer(config) if config.matching.model else None)
        self._awaiting: dict[str, dict] = {}  # record key -> its overlay record, until committed
        self._in_flight: dict[str, _Slot] = {}  # record key -> its resolution and commit under way
        self._lock = threading.Lock()
        self.inbox = Inbox(config, on_committed=self._committed)
        self._stop = threading.Event()
        self._taken_back = False
        self.refresh()
        self._refresher = threading.Thread(target=self._refresh_loop, name="idr-state-refresh", daemon=True)
        self._refresher.start()

    # ---- state ---------------------------------------------------------------------------

    def refresh(self) -> bool:
        changed = self.holder.refresh()
        if changed:
            self.resolver.overlay.drop_published(self.holder.state)
            if not self._taken_back:  # the first state loaded, now or after storage came back
                self._take_back_pending()
                self._taken_back = True
            # Millions of long-lived objects: keep the cyclic garbage collector from walking
            # them all on every full collection (pauses of a tenth of a second at 1M records).
            gc.collect()
            gc.freeze()
            self.metrics.reloads.inc()
            self.metrics.records.set(self.holder.state.size)
            logger.info("state loaded: %s", self.holder.state.versions)
        self.metrics.pending.set(len(self.resolver.overlay.records))
        return changed

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.config.serve.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # keep serving the previous state
                logger.exception("state refresh failed")

    def close(self) -> None:
        """Stop refreshing; commit what is queued."""
        self._stop.set()
        self.inbox.close()

    def _state(self):
        state = self.holder.state
        if state is None:
            raise UnavailableError(f"published state unavailable: {self.holder.error or 'not loaded yet'}")
        return state

    def _take_back_pending(self) -> None:
        """Records in the inbox the state does not hold yet (the service restarted before the
        next run): resolved again, in arrival order, into the overlay."""
        state = self.holder.state
        source = self.resolver.inbox
        for row in self.inbox.pending_rows(state.key_row):
            channel, channel_id = row["channel"], row["channel_id"]
            data = {a: row.get(column) for a, column in source.columns.items()}
            try:
                _, values, _ = self.resolver.parse(channel, channel_id, data)
            except RequestError:
                continue
            _, record = self.resolver.resolve(state, channel, channel_id, values, received_at=row[source.timestamp])
            self.resolver.overlay.add(record, indexed=record["__indexed"])

    # ---- resolve ---------------------------------------------------------------------------

    async def resolve_async(self, request: ResolveRequest) -> tuple[Resolution, bool]:
        """The answer and whether the record was stored by this call. Runs on the event loop:
        :meth:`_begin` does not await, so a slot another request finds has its commit under
        way; the commit is awaited, no thread waits for it."""
        answer, slot, owner = self._begin(request)
        if slot is None:
            return answer, False
        committed = asyncio.wrap_future(slot.future)
        # asyncio.wait does not cancel what it waits for: a timed-out commit still completes
        done, _ = await asyncio.wait([committed], timeout=self.config.serve.timeout_seconds)
        if not done:
            committed.add_done_callback(lambda late: late.exception())  # its outcome is the retry's
            raise self._timed_out()
        if committed.exception() is not None:
            raise self._failed(slot, committed.exception()) from committed.exception()
        return slot.answer, owner

    def _begin(self, request: ResolveRequest) -> tuple[Resolution | None, _Slot | None, bool]:
        """Resolve a request: ``(answer, None, False)`` when nothing is to be stored (a known
        record, ``persist: false``), else ``(None, slot, owner)``: the record's slot, whose
        commit this request started (``owner``) or shares."""
        state = self._state()
        known = self.resolver.known(state, request.source, request.source_id)
        if known is not None:
            return known, None, False
        raw, values, ignored = self.resolver.parse(request.source, request.source_id, request.data)
        if not request.persist:
            answer, _ = self.resolver.resolve(state, request.source, request.source_id, values,
                                              received_at=datetime.now(timezone.utc))
            answer.ignored = ignored
            return answer, None, False
        key = self.resolver.record_key(request.source, request.source_id)
        with self._lock:  # the same record sent twice at once: one commit, one answer
            slot = self._in_flight.get(key)
            if slot is not None:
                return None, slot, False
            committed = self.resolver.known(state, request.source, request.source_id)
            if committed is not None:  # its commit finished since the check above
                return committed, None, False
            slot = self._in_flight[key] = _Slot()
        try:
            received_at = datetime.now(timezone.utc)
            slot.answer, record = self.resolver.resolve(state, request.source, request.source_id, values,
                                                        received_at=received_at)
            slot.answer.ignored = ignored
            with self._lock:
                self._awaiting[key] = record
            slot.future = self.inbox.submit(inbox_row(
                self.inbox.source, channel=request.source, channel_id=request.source_id,
                received_at=received_at, data=raw,
            ))
        except BaseException:
            self._forget(key, slot)
            raise
        return None, slot, True

    def _timed_out(self) -> UnavailableError:
        return UnavailableError(
            f"the inbox commit did not finish within {self.config.serve.timeout_seconds}s; the record may "
            "still be stored: retry with the same source and source_id (it is idempotent)"
        )

    def _failed(self, slot: _Slot, error: BaseException) -> UnavailableError:
        self._forget(slot.answer.record_key, slot)  # nothing was stored: a retry commits again
        return UnavailableError(f"the inbox could not be written: {error}")

    def _forget(self, key: str, slot: _Slot) -> None:
        with self._lock:
            if self._in_flight.get(key) is slot:
                del self._in_flight[key]
                self._awaiting.pop(key, None)

    def _committed(self, rows: list[dict], seconds: float) -> None:
        """Writer thread: committed records join the overlay (a retry then finds them)."""
        self.metrics.commit_seconds.observe(seconds)
        self.metrics.commit_rows.observe(len(rows))
        source = self.inbox.source
        with self._lock:
            for row in rows:
                key = f"{source.name}:{row[source.key]}"
                record = self._awaiting.pop(key, None)
                self._in_flight.pop(key, None)
                if record is not None:
                    self.resolver.overlay.add(record, indexed=record["__indexed"])
        self.metrics.pending.set(len(self.resolver.overlay.records))

    def entity(self, entity_id: str) -> dict | None:
        state = self._state()
        members = state.rows(state.entity_index.lookup(entity_id)) + [
            {k: v for k, v in r.items() if not k.startswith("__")} for r in self.resolver.overlay.members(entity_id)
        ]
        profile = state.golden.get(entity_id)
        if profile is None and not members:
            return None
        return {"entity_id": entity_id, "profile": profile, "pending": profile is None,
                "records": [{k: v for k, v in m.items() if not k.endswith("_nicknames")} for m in members]}


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class PayloadLimit:
    """Refuse a request body larger than ``limit`` bytes (the response of ``refuse``), whether
    the client declared its length or streams it in chunks. Plain ASGI: Starlette's
    ``BaseHTTPMiddleware`` costs a task per request."""

    def __init__(self, app: ASGIApp, *, limit: int, refuse):
        self.app, self.limit, self.refuse = app, limit, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length")
        if size is not None:
            if size.isdigit() and int(size) > self.limit:
                return await self.refuse(size.decode())(scope, receive, send)
            return await self.app(scope, receive, send)
        body, more = b"", True  # no length given: read the chunks here, up to the limit
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self.refuse(f"more than {self.limit}")(scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def _answer(resolution: Resolution, *, stored: bool, started: float) -> dict:
    return {
        "record_key": resolution.record_key,
        "entity_id": resolution.entity_id,
        "status": resolution.status,
        "is_new": resolution.is_new,
        "confidence": resolution.confidence,
        "matched": [
            {"record_key": m.record_key, "source": m.source, "entity_id": m.entity_id,
             "match_probability": m.match_probability, "rule": m.rule, "status": m.status}
            for m in resolution.matched
        ],
        "stored": stored,
        "known": resolution.known,
        "ignored": resolution.ignored,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }


def _error(status: int, description: str) -> dict:
    return {status: {"model": ErrorAnswer, "description": description}}


def create_app(config: Config, service: ResolveService | None = None) -> FastAPI:
    """The FastAPI application of ``config`` (builds a :class:`ResolveService` unless given)."""
    service = service or ResolveService(config)
    app = FastAPI(
        title="lakehouse-idr resolve",
        description="One record in, its entity out: the answer the next batch run will agree with.",
        version="1",
    )
    app.state.service = service
    error = _error_handlers(app, service)
    app.add_middleware(PayloadLimit, limit=config.serve.max_payload_bytes, refuse=lambda size: error(
        400, "bad_request", f"payload of {size} bytes is larger than {config.serve.max_payload_bytes}"))
    _resolve_routes(app, service, error)
    _status_routes(app, service)
    app.openapi = _openapi(app, service)

    @app.on_event("shutdown")
    def stop():
        service.close()

    return app


def _error_handlers(app: FastAPI, service: ResolveService):
    """Errors as ``{"error": message}``, counted by kind; returns the function that makes one."""
    metrics = service.metrics

    def error(status: int, kind: str, message: str) -> JSONResponse:
        metrics.errors.labels(kind).inc()
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        if [e["loc"] for e in exc.errors()] == [("body",)]:  # not a JSON object, or not sent as JSON
            return error(400, "bad_request", "body: a JSON object is required, sent as Content-Type: application/json "
                         f"(got {request.headers.get('content-type') or 'no Content-Type'})")
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return error(400, "bad_request", problems)

    @app.exception_handler(HTTPException)
    async def routing(request: Request, exc: HTTPException):  # no such path (404), method (405)
        kind = "not_found" if exc.status_code == 404 else "bad_request"
        response = error(exc.status_code, kind, f"{request.method} {request.url.path}: {exc.detail}")
        response.headers.update(exc.headers or {})
        return response

    return error


def _resolve_routes(app: FastAPI, service: ResolveService, error) -> None:
    metrics = service.metrics

    @app.post("/v1/resolve", summary="Resolve one record to its entity", response_model=ResolveAnswer,
              responses={**_error(400, "the request is refused (validation, payload over the limit): the "
                                  "message names the field at fault"),
                         **_error(503, "state or inbox unavailable, or the commit timed out: retry")})
    async def resolve(request: ResolveRequest):
        started = time.perf_counter()
        try:
            resolution, stored = await service.resolve_async(request)
        except RequestError as problem:
            return error(400, "bad_request", str(problem))
        except UnavailableError as problem:
            return error(503, "unavailable", str(problem))
        except Exception as problem:  # never a bare 500 page: say what failed
            logger.exception("resolve failed")
            return error(500, "internal", f"{type(problem).__name__}: {problem}")
        answer = _answer(resolution, stored=stored, started=started)
        metrics.outcomes.labels(resolution.status).inc()
        metrics.latency.labels(resolution.status).observe(time.perf_counter() - started)
        return JSONResponse(answer)  # a Response: FastAPI does not validate it again

    # an entity id is a record key, whose source_id may hold a "/": the path converter keeps it
    @app.get("/v1/entities/{entity_id:path}", summary="An entity's golden profile and member records",
             response_model=EntityAnswer,
             responses={**_error(404, "no such entity (merged away? see entity_lineage)"),
                        **_error(503, "published state unavailable: retry")})
    async def entity(entity_id: str):
        try:
            found = service.entity(entity_id)
        except UnavailableError as problem:
            return error(503, "unavailable", str(problem))
        if found is None:
            return error(404, "not_found", f"no entity {entity_id!r} (merged away? see entity_lineage)")
        return JSONResponse(_json(found))


def _status_routes(app: FastAPI, service: ResolveService) -> None:
    @app.get("/health", summary="Loaded state and pending records", response_model=HealthAnswer,
             responses={503: {"model": HealthAnswer, "description": "no state loaded (yet)"}})
    async def health():
        state = service.holder.state
        body = {
            "status": "ok" if state is not None and service.holder.error is None else "degraded",
            "state": None if state is None else {
                "versions": state.versions, "records": state.size, "loaded_at": state.loaded_at.isoformat()},
            "pending_records": len(service.resolver.overlay.records),
            "error": service.holder.error,
        }
        return JSONResponse(body, status_code=200 if state is not None else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse,
             responses={200: {"description": "the Prometheus text exposition format"}})
    async def prometheus():
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _openapi(app: FastAPI, service: ResolveService):
    """FastAPI's schema, made to say what the service does: validation errors are 400s (not
    the 422 FastAPI lists by default), ``data`` takes the inbox source's attributes only."""

    def schema() -> dict:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            for operations in document["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            components = document["components"]["schemas"]
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            data = components["ResolveRequest"]["properties"]["data"]
            data["propertyNames"] = {"enum": sorted(service.resolver.inbox.columns)}
        return app.openapi_schema

    return schema


def serve(config: Config, *, host: str = "127.0.0.1", port: int = 8080, log_level: str = "warning") -> None:
    """Run the service until interrupted."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level, access_log=False)
