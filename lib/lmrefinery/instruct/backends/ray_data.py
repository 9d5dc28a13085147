"""Batch inference at scale with Ray Data: ``map_batches`` over a pool of
model-holding actors, vLLM on GPUs (only when ``vllm`` is importable; not
exercised in this repository's tests, which have no GPU) or the transformers
engine (tested on local Ray)."""
from __future__ import annotations

import json
import os
from typing import Any

from .base import Backend, ChatRequest, ChatResult
from .local_hf import TransformersBackend


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
            errors: list[str | None] = [None] * len(reqs)
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
            from ...engines.ray_engine import ensure_ray

            ensure_ray()
        items = [{"idx": i, "messages": json.dumps(r.messages, ensure_ascii=False),
                  "params": json.dumps(r.full_params())} for i, r in enumerate(requests)]
        res: dict[str, Any] = {"num_gpus": self.num_gpus} if self.num_gpus > 0 else {"num_cpus": self.num_cpus}
        prompts = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // self.batch_size)))
        ds = prompts.map_batches(_RayPredictor, fn_constructor_args=(self.engine, self.model_dir, self.engine_kwargs),
                            batch_size=self.batch_size, concurrency=self.concurrency, batch_format="numpy", **res)
        rows = sorted(ds.take_all(), key=lambda r: int(r["idx"]))
        if [int(r["idx"]) for r in rows] != list(range(len(requests))):
            raise RuntimeError(f"ray backend returned {len(rows)} results for {len(requests)} requests")
        return [ChatResult(r["text"], error=r["error"], finish_reason=r["finish_reason"]) for r in rows]
