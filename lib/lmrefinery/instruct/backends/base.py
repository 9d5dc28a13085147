"""The generation-backend interface: ``Backend.chat(requests) -> results``, one
``ChatResult`` per ``ChatRequest`` (messages + sampling parameters), in order."""
from __future__ import annotations

from dataclasses import dataclass, field

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
