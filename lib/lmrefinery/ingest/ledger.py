"""The input ledger: which input objects (path, size, etag) a run has read.

A successful run records every input object its `read` stage took. With
``lmrefinery run --new-only`` the runner reads only objects that are not in the
ledger yet, or whose size or etag changed since (an object rewritten in place
counts as new). The ledger is one JSON object, written atomically with the
storage layer, so it works on ``s3://`` as well as on disk. Default location:
``<output>/_ledger/inputs.json``; ``--ledger URI`` shares one ledger between
runs that write to different outputs (e.g. one output folder per day).
"""
from __future__ import annotations

import json
import time

from ..core import storage

LEDGER_NAME = "_ledger/inputs.json"


def default_location(output_root: str) -> str:
    return storage.join(output_root.rstrip("/"), LEDGER_NAME)


class Ledger:
    def __init__(self, uri: str):
        self.uri = uri
        self._entries: dict[str, dict] | None = None

    @property
    def entries(self) -> dict[str, dict]:
        if self._entries is None:
            if storage.exists(self.uri):
                data = json.loads(storage.read_bytes(self.uri).decode("utf-8"))
                self._entries = dict(data.get("objects", {}))
            else:
                self._entries = {}
        return self._entries

    def is_new(self, f: dict) -> bool:
        e = self.entries.get(f["path"])
        return e is None or e.get("size") != f.get("size") or e.get("etag") != f.get("etag")

    def new_files(self, files: list[dict]) -> list[dict]:
        return [f for f in files if self.is_new(f)]

    def record(self, files: list[dict], run: str) -> int:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        n = 0
        for f in files:
            if self.is_new(f):
                n += 1
            self.entries[f["path"]] = {"size": f.get("size"), "etag": f.get("etag"), "input": f.get("input"),
                                       "run": run, "recorded_at": now}
        body = {"version": 1, "objects": dict(sorted(self.entries.items()))}
        storage.write_bytes(self.uri, json.dumps(body, indent=1, sort_keys=True).encode("utf-8"))
        return n

    def forget(self, pattern: str | None = None) -> int:
        import fnmatch

        keys = [k for k in self.entries if pattern is None or fnmatch.fnmatchcase(k, pattern)]
        for k in keys:
            del self.entries[k]
        body = {"version": 1, "objects": dict(sorted(self.entries.items()))}
        storage.write_bytes(self.uri, json.dumps(body, indent=1, sort_keys=True).encode("utf-8"))
        return len(keys)
