"""The routes: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (OpenAI's shapes).

Serving a request:
1. authorise (a bearer key when one is set: constant-time compare, never logged);
2. admit (at most `max_in_flight` requests at once, else 429 — running requests are unaffected);
3. parse the body (engine.api.requests: a 400 naming the field and value);
4. generate through the orchestrator (engine.decoding's loop; streamed as server-sent events);
5. answer with `usage` and a `prismn` object (deployment, stages, measured ms/token, gCO2).

Errors use OpenAI's shape {"error": {"message", "type", "param", "code"}}: bad input 400, wrong or
missing key 401, unknown model 404, too many requests 429, nothing deployed / swarm unable to hold
the model / runners lost 503.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from engine.api.requests import GenerationRequest, parse_chat, parse_completion
from engine.coordinator.deployment import READY
from engine.coordinator.links import PeerLost, RunnerFailed
from engine.coordinator.orchestrator import Orchestrator
from engine.errors import InfeasiblePlan, InvalidInput, PrismnError

log = logging.getLogger("prismn.api")

MAX_IN_FLIGHT = 32
MAX_BODY_BYTES = 1_000_000
# A request that finds the deployment not ready (runners rejoining a restarted coordinator, a
# re-plan after a lost runner) waits this long for it, then gets 503 with Retry-After: a client
# holds no connection for minutes, and the official clients retry a 503 after Retry-After by themselves.
READY_WAIT_S = 5.0
RETRY_AFTER_S = 2                 # a rejoin takes the runners' reconnect back-off, <= 5 s


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str, param: str | None = None,
                 code: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def create_app(orchestrator: Orchestrator, api_key: str | None = None, max_in_flight: int = MAX_IN_FLIGHT,
               ready_wait_s: float = READY_WAIT_S) -> FastAPI:
    app = FastAPI(title="Prismn", docs_url=None, redoc_url=None, openapi_url=None)
    in_flight = [0]

    @app.middleware("http")
    async def authorise(request: Request, call_next):
        if api_key is not None:
            header = request.headers.get("authorization", "")
            given = header[7:] if header[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                "invalid_request_error", code="invalid_api_key").response()
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        dep = orchestrator.coordinator.deployment
        data = [] if dep is None else [{"id": dep.plan.model.name, "object": "model", "created": 0,
                                        "owned_by": "prismn", "root": dep.model,
                                        "ready": dep.ready}]
        return {"object": "list", "data": data}

    async def serve(request: Request, parse, kind: str):
        body = await _json_body(request)
        try:
            generation = parse(body)
        except InvalidInput as exc:
            raise _bad_request(exc) from None
        _check_model(orchestrator, generation.model)
        if in_flight[0] >= max_in_flight:
            raise ApiError(429, f"this server already runs {max_in_flight} requests; retry later",
                           "rate_limit_exceeded", code="too_many_requests")
        in_flight[0] += 1
        try:
            await _until_ready(orchestrator, ready_wait_s)
            if generation.stream:
                return StreamingResponse(_released(_stream(orchestrator, generation, kind), in_flight),
                                         media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
            try:
                result = await _generate(orchestrator, generation, None)
            finally:
                in_flight[0] -= 1
            return _answer(result, generation, kind)
        except BaseException:
            if generation.stream:
                in_flight[0] -= 1
            raise

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await serve(request, parse_chat, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await serve(request, parse_completion, "text")

    return app


# ---- generating -------------------------------------------------------------------------------

async def _generate(orchestrator: Orchestrator, generation: GenerationRequest, on_text) -> dict[str, Any]:
    try:
        return await orchestrator.generate(generation.prompt, generation.max_tokens, on_text, chat=generation.chat,
                                      sampling=generation.sampling, stop=generation.stop)
    except PrismnError as exc:
        raise _api_error(exc) from None


def _api_error(exc: PrismnError) -> ApiError:
    """What a client is told: 400 for its own mistake, 503 (with Retry-After when retrying can help)."""
    if isinstance(exc, InvalidInput):
        if exc.field == "deployment":
            return ApiError(503, "no model is deployed: deploy a plan first", "server_error", code="no_deployment",
                            retry_after_s=RETRY_AFTER_S)
        return _bad_request(exc)
    if isinstance(exc, InfeasiblePlan):
        return ApiError(503, f"the swarm cannot hold the model: {exc}", "server_error", code="infeasible",
                        retry_after_s=RETRY_AFTER_S)
    if isinstance(exc, PeerLost | RunnerFailed):
        return ApiError(503, f"the pipeline failed: {exc}", "server_error", code="runner_unavailable",
                        retry_after_s=RETRY_AFTER_S)
    return ApiError(503, str(exc), "server_error")


async def _stream(orchestrator: Orchestrator, generation: GenerationRequest, kind: str) -> AsyncIterator[bytes]:
    request_id, created = _ids(kind)
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    task = asyncio.ensure_future(_generate(orchestrator, generation, queue.put_nowait))
    task.add_done_callback(lambda _t: queue.put_nowait(None))
    model = generation.model
    try:
        if kind == "chat":
            yield _event(_chunk(request_id, created, model, kind, {"role": "assistant", "content": ""}, None))
        while True:
            text = await queue.get()
            if text is None:
                break
            delta = {"content": text} if kind == "chat" else text
            yield _event(_chunk(request_id, created, model, kind, delta, None))
        try:
            result = task.result()
        except ApiError as exc:
            yield _event(exc.body())
        else:
            last = _chunk(request_id, created, model, kind, {} if kind == "chat" else "", result["finish_reason"])
            last["prismn"] = _prismn(result)
            yield _event(last)
            if generation.include_usage:
                yield _event({**_chunk(request_id, created, model, kind, None, None), "choices": [],
                              "usage": _usage(result)})
        yield b"data: [DONE]\n\n"
    finally:
        if not task.done():           # the client went away: stop generating for it
            task.cancel()


async def _released(events: AsyncIterator[bytes], in_flight: list[int]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield event
    finally:
        in_flight[0] -= 1


def _answer(result: dict[str, Any], generation: GenerationRequest, kind: str) -> dict[str, Any]:
    request_id, created = _ids(kind)
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": result["text"]},
                  "finish_reason": result["finish_reason"], "logprobs": None}
    else:
        choice = {"index": 0, "text": result["text"], "finish_reason": result["finish_reason"], "logprobs": None}
    return {"id": request_id, "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": created, "model": generation.model, "choices": [choice], "usage": _usage(result),
            "prismn": _prismn(result)}


def _chunk(request_id: str, created: int, model: str, kind: str, delta: Any, finish: str | None) -> dict[str, Any]:
    choice = ({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None} if kind == "chat"
              else {"index": 0, "text": delta, "finish_reason": finish, "logprobs": None})
    return {"id": request_id, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": [choice]}


def _usage(result: dict[str, Any]) -> dict[str, int]:
    prompt, completion = result["prompt_tokens"], len(result["token_ids"])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _prismn(result: dict[str, Any]) -> dict[str, Any]:
    plan = result["plan"]
    metrics = plan.metrics
    return {
        "deployment_id": result["deployment_id"],
        "stages": [{"peer_id": s.peer_id, "layers": [s.layer_start, s.layer_end], "gpu": s.gpu,
                    "carbon_g_per_kwh": s.carbon_g_per_kwh} for s in plan.stages],
        # measured at the ingress: wall time per token of the decode steps after the first token
        "ms_per_token": round(result["ms_per_token"], 3),
        "time_to_first_token_ms": round(1000.0 * result["first_token_s"], 3),
        "est_ms_per_token": metrics.est_ms_per_token if metrics else None,
        # an estimate: the plan's gCO2 per 1k tokens (grid intensity x power x time) x tokens generated
        "g_co2": result["g_co2"],
        "g_co2_is_estimate": True,
        "recoveries": result["recoveries"],
    }


# ---- checks -----------------------------------------------------------------------------------

async def _until_ready(orchestrator: Orchestrator, wait_s: float) -> None:
    """Returns once the deployment is ready; 503 with Retry-After when it is not within `wait_s`.

    The wait is on the orchestrator's shared readiness (which re-plans around runners that do not come
    back): a request giving up does not cancel it for the others."""
    dep = orchestrator.coordinator.deployment
    if dep is not None and dep.ready:
        return
    try:
        await asyncio.wait_for(asyncio.shield(orchestrator.readiness()), wait_s)
    except TimeoutError:
        dep = orchestrator.coordinator.deployment
        waiting = sorted(p for p, status in dep.status.items() if status != READY) if dep is not None else []
        raise ApiError(503, f"the deployment is not ready yet (waiting for {', '.join(waiting) or 'a re-plan'}): "
                            f"retry in {RETRY_AFTER_S} s", "server_error", code="deployment_not_ready",
                       retry_after_s=RETRY_AFTER_S) from None
    except PrismnError as exc:
        raise _api_error(exc) from None


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes", "invalid_request_error", "body")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}", "invalid_request_error", "body") from None


def _check_model(orchestrator: Orchestrator, model: str) -> None:
    dep = orchestrator.coordinator.deployment
    if dep is None:
        raise ApiError(503, "no model is deployed: deploy a plan first", "server_error", code="no_deployment",
                       retry_after_s=RETRY_AFTER_S)
    if model not in (dep.plan.model.name, dep.model):
        raise ApiError(404, f"model {model!r} is not deployed here; this swarm serves {dep.plan.model.name!r}",
                       "invalid_request_error", "model", "model_not_found")


def _bad_request(exc: InvalidInput) -> ApiError:
    return ApiError(400, f"{exc.field}: {exc.reason} (got {exc.value!r})", "invalid_request_error", exc.field)


def _ids(kind: str) -> tuple[str, int]:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()
