"""Run by tests/test_instruct_llm.py in a process of its own, the way a generation job
drives the Ray Data backend: a fresh driver with a private local Ray. Reads the requests
(JSON) and writes what the backend answered, plain and through a prefilled cache."""
from __future__ import annotations

import json
import sys

from lmrefinery.engines.ray_engine import ensure_ray
from lmrefinery.instruct.backends import CachedBackend, ChatRequest, RayDataBackend, make_backend


def main(model_dir: str, requests_json: str, cache: str, out_json: str) -> None:
    ensure_ray(num_cpus=2)
    reqs = [ChatRequest(r["messages"], r["params"]) for r in json.load(open(requests_json, encoding="utf-8"))]
    # 3 prompts per call over 2 actors: several blocks, results re-ordered by request index
    rb = make_backend({"type": "ray", "model_dir": model_dir, "engine": "transformers", "concurrency": 2,
                       "batch_size": 3, "num_cpus_per_actor": 0.5})
    assert isinstance(rb, RayDataBackend) and rb.num_gpus == 0.0
    plain = rb.chat(reqs)
    cached = CachedBackend(rb, cache)
    through_cache = cached.chat(reqs)
    stats = dict(cached.stats)
    cached.close()
    json.dump({"texts": [r.text for r in plain], "errors": [r.error for r in plain],
               "cached_texts": [r.text for r in through_cache], "cache_stats": stats,
               "empty": len(rb.chat([]))}, open(out_json, "w", encoding="utf-8"))


if __name__ == "__main__":
    main(*sys.argv[1:5])
