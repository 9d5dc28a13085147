"""A response cache in front of any backend (SQLite file), keyed by the backend's
identity, the messages and the sampling parameters, so an interrupted run resumes
without paying twice: a re-run with the same prompts sends zero requests."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading

from .base import Backend, ChatRequest, ChatResult


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
