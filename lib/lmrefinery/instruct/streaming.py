"""Streaming (server-sent events) and ``/v1/completions`` for ``instruct serve``.

One generation path serves all four cases (chat or completion, streamed or not):
``generate_deltas`` runs ``model.generate`` in a thread with a
``TextIteratorStreamer`` and yields text pieces, seeded exactly as
``TransformersBackend`` seeds a request, so a streamed reply concatenates to the
same text as the non-streamed one. Stop strings are honoured across pieces (a
piece is held back while it could still be the start of a stop string).

What the server does not implement is refused with a 400 that names the field:
``n`` > 1, ``best_of`` > 1, ``logprobs``/``top_logprobs``, ``echo``, ``suffix``,
``tools``/``functions``, and more than one prompt per completion request.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

UNSUPPORTED_TRUTHY = ("logprobs", "top_logprobs", "echo", "suffix", "tools", "functions", "tool_choice")


class BadRequest(ValueError):
    pass


def check_supported(body: dict) -> None:
    """Raise BadRequest naming the first request field this server does not implement."""
    for key in ("n", "best_of"):
        if body.get(key) not in (None, 1):
            raise BadRequest(f"'{key}': only 1 is supported by this server (got {body[key]!r})")
    for key in UNSUPPORTED_TRUTHY:
        if body.get(key) not in (None, False, 0, "", [], "none"):
            raise BadRequest(f"'{key}' is not supported by this server")


def gen_params(body: dict) -> dict:
    params = {k: body.get(k) for k in ("temperature", "top_p", "max_tokens", "stop", "seed")}
    if isinstance(params.get("stop"), str):
        params["stop"] = [params["stop"]]
    return params


@dataclass
class Generation:
    """Pieces of text as they are generated; the totals once the iterator is exhausted."""
    prompt_tokens: int
    completion_tokens: int = 0
    finish_reason: str = "stop"
    error: str | None = None
    pieces: Iterator[str] = field(default_factory=lambda: iter(()))


def _seed(ids: list[int], p: dict) -> int:
    if p.get("seed") is not None:
        return int(p["seed"])
    return int(hashlib.sha256(json.dumps([ids, p], sort_keys=True).encode()).hexdigest()[:8], 16)


def generate_deltas(backend, ids: list[int], params: dict) -> Generation:
    """Generate from prompt token ids, yielding text pieces (see the module docstring)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    from .backends import ChatRequest

    model, tok = backend.load()
    p = ChatRequest([], params).full_params()
    max_new = int(p.get("max_tokens") or 256)
    gen = {"max_new_tokens": max_new,
           "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
    temp = float(p.get("temperature") or 0.0)
    gen.update(do_sample=True, temperature=temp, top_p=float(p.get("top_p") or 1.0)) if temp > 0 \
        else gen.update(do_sample=False)
    out = Generation(prompt_tokens=len(ids))
    abort = threading.Event()

    class Count(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            out.completion_tokens = int(input_ids.shape[1]) - len(ids)
            return abort.is_set()

    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=600)

    def run() -> None:
        try:
            with backend._lock:  # the model is shared with non-streamed requests
                torch.manual_seed(_seed(ids, p))
                with torch.no_grad():
                    model.generate(torch.tensor([ids], device=backend._dev),
                                   attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=backend._dev),
                                   streamer=streamer, stopping_criteria=StoppingCriteriaList([Count()]), **gen)
        except Exception as e:  # noqa: BLE001 - reported to the client, not lost in a thread
            out.error = f"generate_error:{type(e).__name__}: {e}"
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    out.pieces = _stop_aware(streamer, [s for s in (p.get("stop") or []) if s], out, abort, worker, max_new)
    return out


def _stop_aware(streamer, stops: list[str], out: Generation, abort: threading.Event,
                worker: threading.Thread, max_new: int) -> Iterator[str]:
    hold = max((len(s) for s in stops), default=1) - 1
    text, sent, drained = "", 0, False
    try:
        for delta in streamer:
            text += delta
            cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
            if cuts:
                abort.set()
                if min(cuts) > sent:
                    yield text[sent:min(cuts)]
                out.finish_reason = "stop"
                return
            safe = len(text) - hold
            if safe > sent:
                yield text[sent:safe]
                sent = safe
        drained = True  # the streamer's end signal has been read
        if len(text) > sent:
            yield text[sent:]
        out.finish_reason = "length" if out.completion_tokens >= max_new else "stop"
    finally:
        abort.set()
        if not drained:  # stopped early (stop string, client gone): let generate() finish
            for _ in streamer:
                pass
        worker.join()


def completion_ids(backend, prompt) -> list[int]:
    """Token ids of a /v1/completions prompt: raw text, no chat template."""
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise BadRequest("'prompt': exactly one string per request is supported")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string")
    _, tok = backend.load()
    return list(tok(prompt)["input_ids"])[-backend.max_input_tokens:]


# ---------------------------------------------------------------- HTTP side
def _event(handler, obj) -> None:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    handler.wfile.write(f"data: {data}\n\n".encode())
    handler.wfile.flush()


def send_stream(handler, kind: str, model_name: str, g: Generation) -> None:
    """Server-sent events in the OpenAI shape, ending with ``data: [DONE]``."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True
    rid, created = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(choice: dict[str, Any]) -> dict[str, Any]:
        return {"id": rid, "object": obj, "created": created, "model": model_name, "choices": [choice]}

    if kind == "chat":
        _event(handler, chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}))
    for piece in g.pieces:
        body = {"delta": {"content": piece}} if kind == "chat" else {"text": piece, "logprobs": None}
        _event(handler, chunk({"index": 0, **body, "finish_reason": None}))
    if g.error:
        _event(handler, {"error": {"message": g.error, "type": "server_error"}})
    last: dict[str, Any] = {"delta": {}} if kind == "chat" else {"text": "", "logprobs": None}
    final = chunk({"index": 0, **last, "finish_reason": g.finish_reason})
    final["usage"] = usage(g)
    _event(handler, final)
    _event(handler, "[DONE]")


def usage(g: Generation) -> dict:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens}


def completion_response(model_name: str, text: str, g: Generation) -> dict:
    return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": g.finish_reason}],
            "usage": usage(g)}
