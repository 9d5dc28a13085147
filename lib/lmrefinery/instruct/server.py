"""A small OpenAI-compatible chat-completions server over a local Hugging Face
model (``lmrefinery instruct serve MODEL_DIR --port 8000``).

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (both with
``"stream": true`` as server-sent events; see streaming.py for what is refused
with a 400), ``GET /v1/models``, ``GET /health``
and ``GET /stats`` (requests served, for tests and monitoring). Requests are
generated one at a time (the model is shared); the HTTP server is threaded so
clients with a concurrency limit still connect. Meant for tests, demos and
small jobs; use vLLM/TGI for throughput.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from .backends import ChatRequest, TransformersBackend
from .streaming import (
    BadRequest,
    check_supported,
    completion_ids,
    completion_response,
    gen_params,
    generate_deltas,
    send_stream,
)


class ServeError(RuntimeError):
    """A server setting that must stop it before it serves anything (CLI exit 2)."""


def resolve_api_key(api_key_env: str | None) -> str | None:
    """The bearer token named by ``--api-key-env``. A named variable that is unset or empty
    is an error: serving without authentication is never the silent fallback."""
    import os

    if not api_key_env:
        return None
    key = os.environ.get(api_key_env, "")
    if not key.strip():
        raise ServeError(f"--api-key-env {api_key_env}: the variable is unset or empty; refusing to serve "
                         "without authentication (set it, or leave out --api-key-env to serve with no key)")
    return key


def parse_chat_body(raw: bytes) -> dict:
    """The JSON object of a chat-completions request; ValueError says what is wrong."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"body is not UTF-8 ({e.reason} at byte {e.start})") from None
    except ValueError as e:
        raise ValueError(f"body is not JSON ({e})") from None
    if not isinstance(body, dict):
        raise ValueError(f"body must be a JSON object, got {type(body).__name__}")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("messages must be a non-empty list")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be an object with string 'role' and 'content'")
    return body


@dataclass
class ServerState:
    """What every request handler of one server shares: the model, its name, the
    counters behind ``GET /stats`` and their lock, and the bearer token (None: no auth)."""
    backend: TransformersBackend
    model_name: str
    stats: dict[str, int]
    lock: threading.Lock
    api_key: str | None = None

    def count(self, key: str) -> None:
        with self.lock:
            self.stats[key] += 1


class ChatHandler(BaseHTTPRequestHandler):
    """One HTTP request (http.server makes a handler per request); the server's shared
    state is the class attribute ``state``, set by ``make_handler``."""

    protocol_version = "HTTP/1.1"
    state: ClassVar[ServerState]

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _bad_request(self, e: Exception) -> None:
        self._send(400, {"error": {"message": f"bad request: {e}", "type": "invalid_request_error"}})

    def _authorised(self) -> bool:
        if not self.state.api_key:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {self.state.api_key}"

    def do_GET(self) -> None:
        st = self.state
        if self.path.rstrip("/") == "/health":
            return self._send(200, {"status": "ok"})
        if self.path.rstrip("/") == "/v1/models":
            return self._send(200, {"object": "list", "data": [{"id": st.model_name, "object": "model"}]})
        if self.path.rstrip("/") == "/stats":
            with st.lock:
                return self._send(200, dict(st.stats))
        self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") == "/v1/completions":
            return self._completions()
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if not self._authorised():
            return self._send(401, {"error": {"message": "invalid api key"}})
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if n < 0:
                raise ValueError(f"bad Content-Length {n}")
            body = parse_chat_body(self.rfile.read(n))
            msgs = body["messages"]
            check_supported(body)  # n, logprobs, tools, ...: a clear 400, not a silent ignore
        except (ValueError, KeyError) as e:
            return self._bad_request(e)
        if body.get("stream"):
            return self._chat_stream(msgs, body)
        self._chat(msgs, body)

    def _chat(self, msgs: list, body: dict) -> None:
        """POST /v1/chat/completions, not streamed."""
        st = self.state
        params = {k: body.get(k) for k in ("temperature", "top_p", "max_tokens", "stop", "seed")}
        if isinstance(params.get("stop"), str):
            params["stop"] = [params["stop"]]
        st.count("requests")
        res = st.backend.chat([ChatRequest(msgs, params)])[0]
        if res.error:
            st.count("errors")
            return self._send(500, {"error": {"message": res.error}})
        self._send(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": st.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": res.text},
                         "finish_reason": res.finish_reason or "stop"}],
            "usage": {**res.usage, "total_tokens": sum(res.usage.values())}})

    def _chat_stream(self, msgs: list, body: dict) -> None:
        st = self.state
        st.count("requests")
        g = generate_deltas(st.backend, st.backend.prompt_ids(msgs), gen_params(body))
        send_stream(self, "chat", st.model_name, g)

    def _completions(self) -> None:
        """POST /v1/completions (raw prompt, no chat template), streamed or not."""
        st = self.state
        if not self._authorised():
            return self._send(401, {"error": {"message": "invalid api key"}})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8"))
            if not isinstance(body, dict) or "prompt" not in body:
                raise BadRequest("'prompt' is required")
            check_supported(body)
            ids = completion_ids(st.backend, body["prompt"])
        except (ValueError, KeyError) as e:
            return self._bad_request(e)
        st.count("requests")
        g = generate_deltas(st.backend, ids, gen_params(body))
        if body.get("stream"):
            return send_stream(self, "completion", st.model_name, g)
        text = "".join(g.pieces)
        if g.error:
            st.count("errors")
            return self._send(500, {"error": {"message": g.error}})
        self._send(200, completion_response(st.model_name, text, g))


def make_handler(backend: TransformersBackend, model_name: str, stats: dict[str, int], lock: threading.Lock,
                 api_key: str | None = None) -> type[ChatHandler]:
    """A ``ChatHandler`` class bound to one model, its counters and its key (what
    ``ThreadingHTTPServer`` takes)."""
    state = ServerState(backend, model_name, stats, lock, api_key)
    return type("BoundChatHandler", (ChatHandler,), {"state": state})


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
          api_key_env: str | None = None, ready_file: str | None = None) -> None:
    import os

    api_key = resolve_api_key(api_key_env)  # before the (slow) model load
    backend = TransformersBackend(model_dir)
    backend.load()
    name = model_name or os.path.basename(os.path.normpath(model_dir))
    stats = {"requests": 0, "errors": 0}
    httpd = ThreadingHTTPServer((host, port), make_handler(backend, name, stats, threading.Lock(), api_key))
    httpd.daemon_threads = True
    print(f"serving {name} on http://{host}:{httpd.server_address[1]}/v1", file=sys.stderr, flush=True)
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(str(httpd.server_address[1]))
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
