"""Any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, TGI, llama.cpp server,
Ollama, a hosted API, or ``lmrefinery instruct serve``).

A thread pool with a concurrency limit, a request-rate limit, retries with
exponential backoff and jitter on 429/5xx/connection errors (``Retry-After``
honoured). The API key is read from the environment variable named by
``api_key_env`` and is never logged or stored."""
from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from .base import Backend, ChatRequest, ChatResult


class RateLimiter:
    """At most `rate` request starts per second, spread evenly (thread-safe)."""

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            time.sleep(at - now)


class OpenAIBackend(Backend):
    name = "openai"
    RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 concurrency: int = 8, max_retries: int = 5, backoff: float = 0.5, max_backoff: float = 30.0,
                 requests_per_minute: float | None = None, timeout: float = 120.0, extra_body: dict | None = None):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = max(1, int(concurrency))
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.limiter = RateLimiter(requests_per_minute)
        self.timeout = timeout
        self.extra_body = extra_body or {}
        self.stats = {"http_calls": 0, "retries": 0}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def identity(self) -> dict:
        return {"backend": self.name, "model": self.model}

    def _headers(self) -> dict:
        h = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def _one(self, req: ChatRequest) -> ChatResult:
        p = req.full_params()
        body = {"model": self.model, "messages": [{"role": m["role"], "content": m.get("content") or ""}
                                                   for m in req.messages], **self.extra_body}
        for k in ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty"):
            if p.get(k) is not None:
                body[k] = p[k]
        data = json.dumps(body).encode("utf-8")
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            with self._lock:
                self.stats["http_calls"] += 1
            retry_after = None
            try:
                r = urllib.request.Request(f"{self.base_url}/chat/completions", data=data, headers=self._headers(),
                                           method="POST")
                with urllib.request.urlopen(r, timeout=self.timeout) as resp:
                    out = json.loads(resp.read().decode("utf-8"))
                choice = out["choices"][0]
                return ChatResult(choice["message"].get("content") or "", finish_reason=choice.get("finish_reason"),
                                  usage=out.get("usage") or {})
            except urllib.error.HTTPError as e:
                last = f"http_{e.code}"
                if e.code not in self.RETRY_STATUS:
                    return ChatResult(None, error=last)
                ra = e.headers.get("Retry-After") if e.headers else None
                try:
                    retry_after = float(ra) if ra else None
                except ValueError:
                    retry_after = None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"connection:{type(e).__name__}"
            except (ValueError, KeyError, IndexError) as e:
                last = f"bad_response:{type(e).__name__}"
            if attempt < self.max_retries:
                with self._lock:
                    self.stats["retries"] += 1
                delay = retry_after if retry_after is not None else min(self.max_backoff, self.backoff * 2 ** attempt)
                time.sleep(delay * (0.5 + random.random() / 2) if retry_after is None else delay)
        return ChatResult(None, error=f"gave_up:{last}")

    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if len(requests) <= 1 or self.concurrency == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as ex:
            return list(ex.map(self._one, requests))
