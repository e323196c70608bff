"""`astrobio serve`: a trained checkpoint behind a small HTTP API (FastAPI, run by uvicorn).

    GET  /health        liveness: {"status": "ok", "model": ..., "uptime_s": ...}
    GET  /v1/models     what is loaded: checkpoint, step, options, run card, input schema, limits
    POST /v1/predict    {"instances": [ {...}, ... ]} -> {"predictions": [ {...}, ... ]}
    POST /v1/generate   text models only: {"prompt": ..., "max_new_tokens": ..., "stream": true}
                        streams tokens as server-sent events (`data: {"token": ...}`)

Inputs are validated by a pydantic model per served model: a missing, mistyped, out-of-range or
unknown field is a 422 whose `detail[].loc` names it (e.g. `["body", "instances", 0,
"obliquity"]`). A body over the size limit is a 413 before it is read in full; a batch over
`max_batch` instances a 422. The server keeps serving after bad requests.

How a model is served (the "serving adapter"): the model plugin defines
`serve_adapter(model, datasets) -> adapter` (cube-unet and llm-lora do, in their plugin; the core
knows no model). `CausalLMAdapter` below serves any Hugging Face style causal LM. An adapter has:

    input_model       a pydantic model of ONE instance (extra fields forbidden)
    predict(items)    a list of validated instances -> a list of JSON-able dicts (one per item)
    describe()        JSON-able notes for /v1/models (units, grid, ...)
    generate(...)     optional: (prompt, max_new_tokens, temperature) -> iterator of text pieces

Concurrent predict requests are batched dynamically (`astrobio_cli.serve_batch`): one inference
thread takes every request waiting (up to `batch_size` instances; with `max_wait_ms` > 0 it also
waits that long for more), runs the adapter once on all of them and answers each with its own
slice; the event loop never runs the model. With the default `max_wait_ms` 0 a lone request
never waits, and requests that arrive while the model runs share the next pass.
`/health` reports the batching counters. Text generation runs under the same model lock.
"""

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError, UserError

DEFAULT_MAX_REQUEST_BYTES = 1_000_000
DEFAULT_MAX_BATCH = 64
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Served:
    """A loaded model ready to answer requests."""

    name: str
    checkpoint: Path
    meta: dict[str, Any]
    run_card: dict[str, Any] | None
    adapter: Any
    device: str
    lock: threading.Lock = field(default_factory=threading.Lock)


# -- loading ------------------------------------------------------------------------------------


def load_served(spec: Any, checkpoint: Path, *, device: str | None = None) -> Served:
    """Rebuild the model from the checkpoint's own options and load its weights (safetensors)."""
    import torch

    from astrobio_cli.training import checkpoint as ckpt

    path = ckpt.resolve_checkpoint(Path(checkpoint))
    meta = ckpt.load_meta(path)
    ckpt.verify_checkpoint(path, (ckpt.WEIGHTS,))  # sha256 from meta.json, before any work
    if meta.get("model") != spec.name:
        raise UsageError(
            f"checkpoint {path} holds a '{meta.get('model')}' model, not '{spec.name}'; "
            f"run `astrobio serve {meta.get('model')} --checkpoint {checkpoint}`"
        )
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device; use --device cpu")
    from astrobio_cli.training.evaluate import rebuild_datasets

    plugin = spec.factory(meta.get("model_options") or {})
    datasets = rebuild_datasets(plugin, meta)
    model = plugin.build(datasets)
    weights = ckpt.load_weights(path, verify=False)  # verified above
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise UsageError(
            f"checkpoint {path} does not fit the model built from its options "
            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )
    model.to(device).eval()
    adapter = make_adapter(spec.name, plugin, model, datasets)
    card_path = path.parent.parent / "run_card.json"
    run_card = None
    if card_path.is_file():
        try:
            run_card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run_card = None
    return Served(spec.name, path, meta, run_card, adapter, device)


def make_adapter(name: str, plugin: Any, model: Any, datasets: Any) -> Any:
    own = getattr(plugin, "serve_adapter", None)
    if callable(own):
        return own(model, datasets)
    raise UserError(
        f"model '{name}' cannot be served: its plugin defines no serve_adapter(model, datasets) "
        "(see docs/deploy.md, 'Serving', and the model contract in "
        "astrobio_cli.training.plugin)"
    )


# -- causal language models (a plugin's serve_adapter may use this) ---------------------------------------------------------


def find_tokenizer(plugin: Any, datasets: Any) -> Any:
    """The tokenizer a text model trained with: on the plugin, or in its datasets' context."""
    for holder in (plugin, getattr(datasets, "context", None), datasets):
        if holder is None:
            continue
        tok = holder.get("tokenizer") if isinstance(holder, dict) else None
        tok = tok or getattr(holder, "tokenizer", None)
        if tok is not None:
            return tok
    return None


class CausalLMAdapter:
    """A Hugging Face style causal LM (a PEFT LoRA model included): prompt in, text out.

    Generation is incremental through the KV cache: the prompt is run once, then each new token
    is fed alone with the cached keys and values (`past_key_values`), so a token costs one
    position of attention, not the whole sequence. Greedy at temperature 0, sampling otherwise.
    """

    def __init__(
        self,
        plugin: Any,
        model: Any,
        datasets: Any,
        tokenizer: Any = None,
        *,
        prefix_ids: tuple[int, ...] = (),
        eos_id: int | None = None,
    ) -> None:
        from pydantic import BaseModel, ConfigDict, Field

        self.model = model
        self.tokenizer = tokenizer or find_tokenizer(plugin, datasets)
        if self.tokenizer is None:
            raise UserError(
                f"model '{getattr(plugin, 'name', '?')}' exposes no tokenizer (plugin.tokenizer "
                "or datasets.context['tokenizer']); it cannot be served"
            )
        self.prefix_ids = list(prefix_ids)  # e.g. a beginning-of-text id the model trained with
        self.eos_id = (
            eos_id if eos_id is not None else getattr(self.tokenizer, "eos_token_id", None)
        )
        cfg = getattr(model, "config", None)
        self.max_positions = int(
            getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 0) or 0
        )

        class TextInput(BaseModel):
            model_config = ConfigDict(**STRICT)
            prompt: str = Field(min_length=1, max_length=10_000)
            max_new_tokens: int = Field(32, ge=1, le=1024)
            temperature: float = Field(0.0, ge=0.0, le=5.0)

        self.input_model = TextInput

    def describe(self) -> dict[str, Any]:
        return {"outputs": {"text": "the continuation of the prompt"}, "kv_cache": True}

    def predict(self, items: list[Any]) -> list[dict[str, Any]]:
        return [
            {"text": "".join(self.generate(it.prompt, it.max_new_tokens, it.temperature))}
            for it in items
        ]

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def _decode(self, ids: list[int]) -> str:
        try:
            return self.tokenizer.decode(ids, skip_special_tokens=True)
        except TypeError:
            return self.tokenizer.decode(ids)

    def generate(self, prompt: str, max_new_tokens: int, temperature: float) -> Iterator[str]:
        import torch

        ids = self.prefix_ids + self._encode(prompt)
        if not ids:
            return
        if self.max_positions:
            room = self.max_positions - max_new_tokens
            if room < 1:
                max_new_tokens, room = self.max_positions - 1, 1
            ids = ids[-room:]  # keep the end of a long prompt
        device = next(self.model.parameters()).device
        eos = self.eos_id
        gen = torch.Generator(device="cpu").manual_seed(0)
        new: list[int] = []
        text_so_far = ""
        past = None
        step_input = torch.tensor([ids], device=device)  # (1, T): the prompt, once
        with torch.no_grad():
            for _ in range(max_new_tokens):
                out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[0, -1].float().cpu()
                if temperature > 0:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=gen))
                else:
                    token = int(logits.argmax())
                if eos is not None and token == eos:
                    break
                new.append(token)
                text = self._decode(new)
                if len(text) > len(text_so_far) and text.startswith(text_so_far):
                    yield text[len(text_so_far) :]
                    text_so_far = text
                step_input = torch.tensor([[token]], device=device)  # (1, 1) with the cache
        text = self._decode(new)
        if text != text_so_far and text.startswith(text_so_far):
            yield text[len(text_so_far) :]


# -- request validation -------------------------------------------------------------------------

# Every request model: unknown fields are errors, numbers must be JSON numbers (`"23.4"` and
# `true` are not; an integer such as `1` is a fine float), and NaN/Infinity (which Python's JSON
# reader accepts, and `1e400` becomes) are not numbers a model can take.
STRICT = {"extra": "forbid", "strict": True, "allow_inf_nan": False}


def strict_model(model: Any) -> Any:
    """`model` (an adapter's input model) with :data:`STRICT` validation, whatever its plugin
    declared: its fields, validators and name are kept."""
    from pydantic import BaseModel, ConfigDict

    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return model
    config = ConfigDict(**{**model.model_config, **STRICT})
    return type(
        model.__name__,
        (model,),
        {"model_config": config, "__module__": model.__module__, "__doc__": model.__doc__},
    )


def _finite_json(value: Any) -> bool:
    """Whether `value` encodes as standard JSON (no NaN or Infinity anywhere in it)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's errors as a 422 body that always encodes: `loc` names the field; the offending
    `input` is echoed only where it is plain JSON (never NaN or Infinity, which cannot be)."""
    from fastapi.encoders import jsonable_encoder

    out = []
    for err in errors:
        item = {
            "type": str(err.get("type", "")),
            "loc": [p if isinstance(p, int | str) else str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
        }
        if "input" in err:
            try:
                shown = jsonable_encoder(err["input"])
            except Exception:
                shown = None
            if _finite_json(shown):
                item["input"] = shown
            else:
                item["msg"] += " (the value sent is not shown: it is not a finite number)"
        ctx = err.get("ctx")
        if ctx:
            shown = {str(k): v if _finite_json(v) else str(v) for k, v in ctx.items()}
            item["ctx"] = shown
        out.append(item)
    return out


# -- the app ------------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413. Checked on the declared
    Content-Length, and while reading (chunked bodies): the body is read here chunk by chunk,
    at most `limit` bytes are held, and the app gets it only when it fits."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send, int(declared))
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                return await self._reject(send, seen)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send, size: int) -> None:
        body = json.dumps(
            {
                "detail": f"request body of {size} bytes or more is over the limit of "
                f"{self.limit} bytes (astrobio serve --max-request-bytes); send fewer instances "
                "per request"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app(
    served: Served,
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    batch_size: int | None = None,
    max_wait_ms: float = 0.0,
) -> Any:
    """The FastAPI app for one loaded model (a factory: nothing global). Concurrent predict
    requests are batched (`astrobio_cli.serve_batch`): up to `batch_size` instances (default
    `max_batch`) gathered for at most `max_wait_ms` share one call of the adapter."""
    import asyncio

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field, create_model

    from astrobio_cli import __version__
    from astrobio_cli.serve_batch import Batcher

    adapter = served.adapter
    started = time.time()

    def run_batch(items: list[Any]) -> list[dict[str, Any]]:
        with served.lock:  # shared with /v1/generate
            return adapter.predict(items)

    batcher = Batcher(
        run_batch, max_batch=max(batch_size or max_batch, 1), max_wait_s=max_wait_ms / 1000.0
    )
    app = FastAPI(
        title=f"astrobio serve {served.name}",
        version=__version__,
        description=f"Predictions of the {served.name} checkpoint {served.checkpoint}",
    )

    PredictRequest = create_model(
        "PredictRequest",
        __config__=ConfigDict(**STRICT),
        instances=(
            list[strict_model(adapter.input_model)],
            Field(min_length=1, max_length=max_batch, description="one or more inputs"),
        ),
    )

    class PredictResponse(BaseModel):
        model: str
        predictions: list[dict[str, Any]]

    class GenerateRequest(BaseModel):
        model_config = ConfigDict(**STRICT)
        prompt: str = Field(min_length=1, max_length=10_000)
        max_new_tokens: int = Field(32, ge=1, le=1024)
        temperature: float = Field(0.0, ge=0.0, le=5.0)
        stream: bool = True

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_errors(exc.errors())})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": served.name,
            "uptime_s": round(time.time() - started, 1),
            "batching": batcher.stats.to_dict(),
        }

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "data": [
                {
                    "id": served.name,
                    "checkpoint": str(served.checkpoint),
                    "step": served.meta.get("step"),
                    "model_options": served.meta.get("model_options"),
                    "device": served.device,
                    "generates_text": callable(getattr(adapter, "generate", None)),
                    "input_schema": adapter.input_model.model_json_schema(),
                    "describe": adapter.describe(),
                    "limits": {
                        "max_request_bytes": max_request_bytes,
                        "max_batch": max_batch,
                        "batch_size": batcher.max_batch,
                        "max_wait_ms": max_wait_ms,
                    },
                    "run_card": served.run_card,
                }
            ]
        }

    @app.post("/v1/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        # The event loop only waits: the batcher's thread runs the model, batching requests.
        predictions = await asyncio.wrap_future(batcher.submit(request.instances))
        return {"model": served.name, "predictions": predictions}

    @app.post("/v1/generate")
    def generate(request: GenerateRequest):
        gen = getattr(adapter, "generate", None)
        if not callable(gen):
            raise HTTPException(
                status_code=404,
                detail=f"model '{served.name}' does not generate text; /v1/generate serves "
                "text models such as llm-lora",
            )
        if not request.stream:
            with served.lock:
                text = "".join(gen(request.prompt, request.max_new_tokens, request.temperature))
            return {"model": served.name, "text": text}

        def events() -> Iterator[str]:
            with served.lock:
                for piece in gen(request.prompt, request.max_new_tokens, request.temperature):
                    yield f"data: {json.dumps({'token': piece})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app.add_middleware(BodyLimit, limit=max_request_bytes)
    return app
