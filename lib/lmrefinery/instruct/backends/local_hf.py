"""Generation with a local Hugging Face causal-LM directory (anything
``AutoModelForCausalLM`` loads, including the model ``lmrefinery train`` exports)."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any

from .base import Backend, ChatRequest, ChatResult


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
        self._model: Any = None      # transformers' model and tokenizer, loaded on first use
        self._tok: Any = None
        self._lock = threading.Lock()

    def identity(self) -> dict:
        fp = ""
        for f in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"):
            p = os.path.join(self.model_dir, f)
            if os.path.exists(p):
                st = os.stat(p)
                fp += f"{f}:{st.st_size};"
        return {"backend": self.name, "model": os.path.basename(os.path.normpath(self.model_dir)), "files": fp}

    def load(self) -> tuple[Any, Any]:
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

    def prompt_ids(self, messages: list[dict]) -> list[int]:
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
