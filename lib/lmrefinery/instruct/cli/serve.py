"""`lmrefinery instruct serve`: the OpenAI-compatible server over a local HF model."""
from __future__ import annotations

import argparse
import sys


def register(s: argparse._SubParsersAction) -> None:
    q = s.add_parser("serve", help="OpenAI-compatible chat-completions server over a local HF model")
    q.add_argument("model_dir", help="a local Hugging Face causal-LM folder")
    q.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    q.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    q.add_argument("--model-name", help="model id reported by /v1/models (default: the folder name)")
    q.add_argument("--api-key-env", help="require this env var's value as the bearer token")
    q.add_argument("--ready-file", help="write the bound port here once listening")
    q.set_defaults(fn=cmd_serve)


def cmd_serve(a: argparse.Namespace) -> int:
    from ..server import ServeError, serve

    try:
        serve(a.model_dir, host=a.host, port=a.port, model_name=a.model_name, api_key_env=a.api_key_env,
              ready_file=a.ready_file)
    except ServeError as e:
        print(f"lmrefinery: error: {e}", file=sys.stderr)
        return 2
    return 0
