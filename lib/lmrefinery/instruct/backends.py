"""Generation backends behind one interface.

``Backend.chat(requests) -> results`` takes chat requests (messages + sampling
parameters) and returns one result per request, in order. Implementations:

* ``OpenAIBackend`` - any OpenAI-compatible ``/v1/chat/completions`` server
  (vLLM, TGI, llama.cpp server, Ollama, a hosted API, or ``lmrefinery instruct
  serve``). Thread pool with a concurrency limit, a request-rate limit,
  retries with exponential backoff and jitter on 429/5xx/connection errors
  (``Retry-After`` honoured). The API key is read from the environment variable
  named by ``api_key_env`` and is never logged or stored.
* ``TransformersBackend`` - any local causal-LM directory loadable by
  ``AutoModelForCausalLM`` (including the model the training issue exports).
* ``RayDataBackend`` - Ray Data ``map_batches`` over a pool of model-holding
  actors: vLLM on GPUs for scale (only when ``vllm`` is importable; not
  exercised in this repository's tests, which have no GPU), or the transformers
  engine (tested on local Ray).

``CachedBackend`` wraps any of them with a response cache keyed by the
backend identity, the messages and the sampling parameters (SQLite file), so
an interrupted run resumes without paying twice: a re-run with the same
prompts sends zero requests.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PARAMS = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 256}


@dataclass
class ChatRequest:
    messages: list[dict]
    params: dict = field(default_factory=dict)   # temperature, top_p, max_tokens, stop, seed

    def full_params(self) -> dict:
        p = dict(DEFAULT_PARAMS)
        p.update({k: v for k, v in self.params.items() if v is not None})
        return p


@dataclass
class ChatResult:
    text: str | None
    error: str | None = None
    cached: bool = False
    finish_reason: str | None = None
    usage: dict = field(default_factory=dict)


class Backend:
    name = "base"

    def identity(self) -> dict:
        """What, besides the prompt and parameters, decides the output (cache key)."""
        return {"backend": self.name}

    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- cache
class ResponseCache:
    """SQLite table key -> response JSON. Safe across threads (one lock) and
    restarts (each put is committed)."""

    def __init__(self, path: str):
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    @staticmethod
    def key(identity: dict, req: ChatRequest) -> str:
        blob = json.dumps({"id": identity, "messages": [{"role": m["role"], "content": m.get("content") or ""}
                                                         for m in req.messages],
                           "params": req.full_params()}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, json.dumps(value)))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedBackend(Backend):
    def __init__(self, inner: Backend, cache_path: str):
        self.inner = inner
        self.name = inner.name
        self.cache = ResponseCache(cache_path)
        self.stats = {"requests": 0, "cache_hits": 0, "errors": 0}

    def identity(self) -> dict:
        return self.inner.identity()

    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        ident = self.inner.identity()
        keys = [ResponseCache.key(ident, r) for r in requests]
        out: list[ChatResult | None] = [None] * len(requests)
        todo = []
        for i, k in enumerate(keys):
            hit = self.cache.get(k)
            if hit is not None:
                out[i] = ChatResult(hit["text"], cached=True, finish_reason=hit.get("finish_reason"))
                self.stats["cache_hits"] += 1
            else:
                todo.append(i)
        if todo:
            # identical prompts in one batch are sent once
            uniq: dict[str, list[int]] = {}
            for i in todo:
                uniq.setdefault(keys[i], []).append(i)
            firsts = [v[0] for v in uniq.values()]
            res = self.inner.chat([requests[i] for i in firsts])
            self.stats["requests"] += len(firsts)
            for i, r in zip(firsts, res):
                if r.error is None and r.text is not None:
                    self.cache.put(keys[i], {"text": r.text, "finish_reason": r.finish_reason})
                else:
                    self.stats["errors"] += 1
                for j in uniq[keys[i]]:
                    out[j] = r
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.cache.close()
        self.inner.close()


# ---------------------------------------------------------------- OpenAI-compatible HTTP
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


# ---------------------------------------------------------------- local transformers
def _render_plain(messages: list[dict]) -> str:
    return "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in messages) + "assistant:"


class TransformersBackend(Backend):
    """Greedy or sampled generation with a local Hugging Face causal LM. Sampling
    is seeded per request (params.seed, else a hash of the prompt) so the same
    request gives the same text."""

    name = "transformers"

    def __init__(self, model_dir: str, device: str | None = None, dtype: str | None = None,
                 max_input_tokens: int = 2048):
        self.model_dir = model_dir
        self.device = device
        self.dtype = dtype
        self.max_input_tokens = max_input_tokens
        self._model = None
        self._tok = None
        self._lock = threading.Lock()

    def identity(self) -> dict:
        fp = ""
        for f in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"):
            p = os.path.join(self.model_dir, f)
            if os.path.exists(p):
                st = os.stat(p)
                fp += f"{f}:{st.st_size};"
        return {"backend": self.name, "model": os.path.basename(os.path.normpath(self.model_dir)), "files": fp}

    def load(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.model_dir)
            kw = {}
            if self.dtype:
                kw["dtype"] = getattr(torch, self.dtype)
            self._model = AutoModelForCausalLM.from_pretrained(self.model_dir, **kw)
            dev = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._model.to(dev).eval()
            self._dev = dev
        return self._model, self._tok

    def prompt_ids(self, messages: list[dict]):
        _, tok = self.load()
        msgs = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            ids = tok(_render_plain(msgs))["input_ids"]
        return list(ids)[-self.max_input_tokens:]

    def _one(self, req: ChatRequest) -> ChatResult:
        import torch

        model, tok = self.load()
        p = req.full_params()
        ids = self.prompt_ids(req.messages)
        seed = p.get("seed")
        if seed is None:
            seed = int(hashlib.sha256(json.dumps([ids, p], sort_keys=True).encode()).hexdigest()[:8], 16)
        gen = {"max_new_tokens": int(p.get("max_tokens") or 256), "pad_token_id": tok.pad_token_id
               if tok.pad_token_id is not None else tok.eos_token_id}
        temp = float(p.get("temperature") or 0.0)
        if temp > 0:
            gen.update(do_sample=True, temperature=temp, top_p=float(p.get("top_p") or 1.0))
        else:
            gen.update(do_sample=False)
        with self._lock:
            torch.manual_seed(int(seed))
            with torch.no_grad():
                out = model.generate(torch.tensor([ids], device=self._dev),
                                     attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self._dev),
                                     **gen)
        new = out[0][len(ids):].tolist()
        text = tok.decode(new, skip_special_tokens=True)
        finish = "length" if len(new) >= gen["max_new_tokens"] else "stop"
        for s in (p.get("stop") or []):
            if s and s in text:
                text, finish = text.split(s, 1)[0], "stop"
        return ChatResult(text, finish_reason=finish,
                          usage={"prompt_tokens": len(ids), "completion_tokens": len(new)})

    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        out = []
        for r in requests:
            try:
                out.append(self._one(r))
            except Exception as e:  # noqa: BLE001 - one bad prompt must not end the run
                out.append(ChatResult(None, error=f"generate_error:{type(e).__name__}: {e}"))
        return out


# ---------------------------------------------------------------- Ray Data batch inference
def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class _RayPredictor:
    """One Ray Data actor: loads the engine once, then generates for each batch of
    prompts. ``engine="vllm"`` holds a ``vllm.LLM``; ``engine="transformers"`` runs the
    same code as ``TransformersBackend`` (CPU-capable, so the scale path is tested)."""

    def __init__(self, engine: str, model_dir: str, engine_kwargs: dict):
        self.engine = engine
        if engine == "vllm":
            from vllm import LLM

            self.llm = LLM(model=model_dir, **engine_kwargs)
        else:
            self.backend = TransformersBackend(model_dir, **engine_kwargs)

    def __call__(self, batch: dict) -> dict:
        reqs = [ChatRequest(json.loads(m), json.loads(p)) for m, p in zip(batch["messages"], batch["params"])]
        if self.engine == "vllm":
            from vllm import SamplingParams

            sps = [SamplingParams(temperature=r.params.get("temperature", 0.7), top_p=r.params.get("top_p", 1.0),
                                  max_tokens=r.params.get("max_tokens", 256), stop=r.params.get("stop"),
                                  seed=r.params.get("seed"))
                   for r in reqs]
            outs = self.llm.chat([r.messages for r in reqs], sps, use_tqdm=False)
            texts = [o.outputs[0].text for o in outs]
            errors = [None] * len(reqs)
            finish = [o.outputs[0].finish_reason for o in outs]
        else:
            res = self.backend.chat(reqs)
            texts, errors, finish = [r.text for r in res], [r.error for r in res], [r.finish_reason for r in res]
        return {"idx": list(batch["idx"]), "text": texts, "error": errors, "finish_reason": finish}


class RayDataBackend(Backend):
    """Batch inference at scale: the prompts become a Ray Data dataset and
    ``map_batches`` runs them through a pool of actors that each load the model
    once (``concurrency`` actors, ``num_gpus_per_actor`` GPUs each, or
    ``num_cpus_per_actor`` CPUs when no GPU is asked for). Results come back in
    request order. ``engine="vllm"`` (needs the vllm package and a GPU) is the
    throughput path; ``engine="transformers"`` runs anywhere and gives the same
    text as ``TransformersBackend`` for the same request. Needs a Ray cluster
    (``ensure_ray`` connects or starts one when none is connected)."""

    def __init__(self, model_dir: str, engine: str = "vllm", num_gpus_per_actor: float | None = None,
                 num_cpus_per_actor: float = 1.0, concurrency: int = 1, batch_size: int = 64,
                 engine_kwargs: dict | None = None):
        if engine not in ("vllm", "transformers"):
            raise ValueError(f"ray backend engine {engine!r}: expected 'vllm' or 'transformers'")
        if engine == "vllm" and not vllm_available():
            raise RuntimeError("backend 'vllm' needs the vllm package (pip install vllm) and a GPU; "
                               "use type 'ray' (the transformers engine on Ray Data), 'openai' against a vLLM "
                               "server, or 'transformers' in process")
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"ray backend: model_dir {model_dir!r} is not a directory")
        self.model_dir, self.engine, self.concurrency = model_dir, engine, int(concurrency)
        self.num_gpus = (1.0 if engine == "vllm" else 0.0) if num_gpus_per_actor is None else float(num_gpus_per_actor)
        self.num_cpus = float(num_cpus_per_actor)
        self.batch_size, self.engine_kwargs = int(batch_size), dict(engine_kwargs or {})
        self.name = "vllm" if engine == "vllm" else "ray-transformers"

    def identity(self) -> dict:
        if self.engine == "transformers":   # same outputs as the in-process backend: share its cache entries
            return TransformersBackend(self.model_dir, **self.engine_kwargs).identity()
        return {"backend": self.name, "model": os.path.basename(os.path.normpath(self.model_dir)),
                "engine_kwargs": self.engine_kwargs}

    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        import ray

        if not requests:
            return []
        if not ray.is_initialized():
            from ..engines.ray_engine import ensure_ray

            ensure_ray()
        items = [{"idx": i, "messages": json.dumps(r.messages, ensure_ascii=False),
                  "params": json.dumps(r.full_params())} for i, r in enumerate(requests)]
        res = {"num_gpus": self.num_gpus} if self.num_gpus > 0 else {"num_cpus": self.num_cpus}
        ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // self.batch_size)))
        ds = ds.map_batches(_RayPredictor, fn_constructor_args=(self.engine, self.model_dir, self.engine_kwargs),
                            batch_size=self.batch_size, concurrency=self.concurrency, batch_format="numpy", **res)
        rows = sorted(ds.take_all(), key=lambda r: int(r["idx"]))
        if [int(r["idx"]) for r in rows] != list(range(len(requests))):
            raise RuntimeError(f"ray backend returned {len(rows)} results for {len(requests)} requests")
        return [ChatResult(r["text"], error=r["error"], finish_reason=r["finish_reason"]) for r in rows]


# ---------------------------------------------------------------- factory
def make_backend(spec: dict[str, Any], cache_path: str | None = None) -> Backend:
    """``{"type": "openai"|"transformers"|"ray"|"vllm", ...}`` -> a backend, cached if
    cache_path. ``vllm`` is ``ray`` with ``engine: vllm``."""
    spec = dict(spec)
    kind = spec.pop("type", None) or ("openai" if "base_url" in spec else "transformers")
    cache_path = spec.pop("cache", None) or cache_path
    if kind == "openai":
        b: Backend = OpenAIBackend(**spec)
    elif kind == "transformers":
        b = TransformersBackend(**spec)
    elif kind in ("ray", "vllm"):
        if kind == "vllm":
            spec.setdefault("engine", "vllm")
        b = RayDataBackend(**spec)
    else:
        raise ValueError(f"unknown backend type {kind!r}: expected openai, transformers, ray or vllm")
    return CachedBackend(b, cache_path) if cache_path else b
