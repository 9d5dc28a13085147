"""What the `lmrefinery instruct` commands share: the input-format and backend
options, building a backend from them, generation settings, and writing a
command's records, rejects and stats next to each other."""
from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable

from ..backends import Backend

Handler = Callable[[argparse.Namespace], int]


def guarded(fn: Handler) -> Handler:
    """An unreadable input file is exit 2 with its name, not a traceback or an empty success."""

    @functools.wraps(fn)
    def run(a: argparse.Namespace) -> int:
        from ..common import UnreadableInput

        try:
            return fn(a)
        except UnreadableInput as e:
            print(f"lmrefinery: error: {e}", file=sys.stderr)
            return 2
    return run


def format_arg(q: argparse.ArgumentParser) -> None:
    q.add_argument("--format", default="auto", help="input format: auto (sniffed from the first record), rows, "
                   "alpaca, alpaca_bilingual, belle, dolly, self_instruct, sharegpt, openai_messages")


def backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=["openai", "transformers", "ray", "vllm"], default=None,
                   help="default: openai when --base-url is given, else transformers; ray = Ray Data "
                        "actors running the transformers engine, vllm = Ray Data actors running vLLM")
    g.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", help="model name sent to the server")
    g.add_argument("--model-dir", help="local HF model directory (transformers / ray / vllm)")
    g.add_argument("--actors", type=int, default=1, help="ray / vllm: model-holding actors")
    g.add_argument("--gpus-per-actor", type=float, default=None, help="ray / vllm: default 1 for vllm, 0 otherwise")
    g.add_argument("--batch-size", type=int, default=64, help="ray / vllm: prompts per actor call")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    g.add_argument("--concurrency", type=int, default=8, help="parallel requests to the server")
    g.add_argument("--rpm", type=float, default=None, help="max requests per minute")
    g.add_argument("--max-retries", type=int, default=5, help="attempts per prompt on a server error or time-out")
    g.add_argument("--cache", help="response cache (SQLite); default <out>.cache.sqlite")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the command's own)")
    g.add_argument("--max-tokens", type=int, default=None,
                   help="longest generated reply in tokens (default: the command's own)")


def make_backend_from_args(a: argparse.Namespace, out: str) -> Backend:
    from ..backends import make_backend

    kind = a.backend or ("openai" if a.base_url else "transformers")
    if kind == "openai":
        if not a.base_url or not a.model:
            raise SystemExit("lmrefinery: error: --base-url and --model are needed for the openai backend")
        spec = dict(type="openai", base_url=a.base_url, model=a.model, api_key_env=a.api_key_env,
                    concurrency=a.concurrency, requests_per_minute=a.rpm, max_retries=a.max_retries)
    else:
        if not a.model_dir:
            raise SystemExit(f"lmrefinery: error: --model-dir is needed for the {kind} backend")
        spec = dict(type=kind, model_dir=a.model_dir)
        if kind in ("ray", "vllm"):
            spec.update(engine="vllm" if kind == "vllm" else "transformers", concurrency=a.actors,
                        num_gpus_per_actor=a.gpus_per_actor, batch_size=a.batch_size)
    cache = a.cache or (out + ".cache.sqlite")
    return make_backend(spec, cache_path=cache)


def gen_params(a: argparse.Namespace, defaults: dict) -> dict:
    d = dict(defaults)
    if a.temperature is not None:
        d["temperature"] = a.temperature
    if a.max_tokens is not None:
        d["max_tokens"] = a.max_tokens
    return d


def write_outputs(out: str, records: list[dict], rejects: list[dict], stats: dict) -> None:
    from ..common import write_jsonl

    write_jsonl(out, records)
    write_jsonl(out + ".rejects.jsonl", rejects)
    with open(out + ".stats.json", "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1, sort_keys=True, ensure_ascii=False)
    print(json.dumps(stats, ensure_ascii=False, sort_keys=True))
