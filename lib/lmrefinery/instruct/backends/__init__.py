"""Generation backends behind one interface.

``Backend.chat(requests) -> results`` takes chat requests (messages + sampling
parameters) and returns one result per request, in order (``base.py``).
Implementations, one module each:

* ``OpenAIBackend`` (``openai_http.py``) - any OpenAI-compatible
  ``/v1/chat/completions`` server, with concurrency and rate limits and retries.
* ``TransformersBackend`` (``local_hf.py``) - any local causal-LM directory
  loadable by ``AutoModelForCausalLM`` (including the model the training issue exports).
* ``RayDataBackend`` (``ray_data.py``) - Ray Data ``map_batches`` over a pool of
  model-holding actors: vLLM on GPUs for scale, or the transformers engine.

``CachedBackend`` (``cache.py``) wraps any of them with a response cache keyed by
the backend identity, the messages and the sampling parameters (SQLite file), so
an interrupted run resumes without paying twice. ``make_backend`` builds one from
a recipe's or the CLI's spec.
"""
from __future__ import annotations

from typing import Any

from .base import DEFAULT_PARAMS, Backend, ChatRequest, ChatResult
from .cache import CachedBackend, ResponseCache
from .local_hf import TransformersBackend
from .openai_http import OpenAIBackend, RateLimiter
from .ray_data import RayDataBackend, vllm_available

__all__ = ["DEFAULT_PARAMS", "Backend", "CachedBackend", "ChatRequest", "ChatResult", "OpenAIBackend",
           "RateLimiter", "RayDataBackend", "ResponseCache", "TransformersBackend", "make_backend",
           "vllm_available"]


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
