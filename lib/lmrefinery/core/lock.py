"""One run at a time per output root.

``<output>/_lock.json`` holds the run id, host, pid, start time and a heartbeat.
It is created only if absent — ``O_CREAT|O_EXCL`` on a local disk, a conditional
put (``If-None-Match: *``) on S3 — so of two runs started together exactly one
gets it; the other stops with ``RunLocked`` (exit 2) naming the holder.

A lock is stale when its heartbeat is older than ``LMR_LOCK_STALE_S`` (default
120 s; the holder refreshes it every ``LMR_LOCK_HEARTBEAT_S``, default 15 s), or
when its holder ran on this host and that process is gone (a SIGKILLed run is
resumed at once). A stale lock, or any lock with ``--break-lock``, is taken over
by a conditional replace (``If-Match`` the holder's ETag on S3; a compare of the
holder's run id on disk), so two runs breaking the same lock cannot both win.
A holder whose lock was broken notices at its next heartbeat or commit and stops
with ``RunLocked`` before it commits anything more.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from . import storage

LOCK_NAME = "_lock.json"


class RunLocked(storage.StorageError):
    """Another run holds (or took over) the output root."""


def _env_seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _proc_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (guards against pid reuse); '' if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


@dataclass(frozen=True)
class LockInfo:
    run_id: str
    host: str
    pid: int
    proc_start: str
    started: float
    heartbeat: float
    run_name: str = ""

    def describe(self, now: float) -> str:
        return (f"run {self.run_id} ({self.run_name or 'unnamed'}) on host {self.host}, pid {self.pid}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.started))}, last heartbeat "
                f"{now - self.heartbeat:.0f} s ago")

    def is_dead_here(self) -> bool:
        """True when the holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return bool(self.proc_start) and _proc_start(self.pid) != self.proc_start


class _Store:
    """Create-if-absent, read-with-version and replace-if-unchanged of one small object."""

    def __init__(self, uri: str):
        self.uri = uri

    def create(self, data: bytes) -> bool:
        if storage.is_s3(self.uri):
            from botocore.exceptions import ClientError

            b, k = storage.split_s3(self.uri)
            try:
                storage.s3_client().put_object(Bucket=b, Key=k, Body=data, IfNoneMatch="*")
                return True
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    return False
                if code == "NoSuchBucket":  # found before any stage runs, not after the read stage
                    raise storage.StorageError(
                        f"output {self.uri.rsplit('/', 1)[0]}: bucket '{b}' does not exist (or these credentials "
                        "cannot see it); create it or fix 'output'") from None
                raise storage.s3_errors(self.uri, e) from e
            except Exception as e:
                raise storage.s3_errors(self.uri, e) from e
        os.makedirs(os.path.dirname(self.uri) or ".", exist_ok=True)
        try:
            fd = os.open(self.uri, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def read(self) -> tuple[LockInfo | None, str]:
        """(holder, version); (None, '') when there is no lock."""
        try:
            if storage.is_s3(self.uri):
                b, k = storage.split_s3(self.uri)
                r = storage.s3_client().get_object(Bucket=b, Key=k)
                data, version = r["Body"].read(), r.get("ETag", "")
            else:
                with open(self.uri, "rb") as f:
                    data = f.read()
                version = ""
        except FileNotFoundError:
            return None, ""
        except Exception as e:  # noqa: BLE001 - S3 NoSuchKey and friends
            if "NoSuchKey" in str(e) or "404" in str(e):
                return None, ""
            raise
        try:
            d = json.loads(data)
            info = LockInfo(**d)
        except (ValueError, TypeError) as e:
            raise RunLocked(f"{self.uri}: unreadable run lock ({type(e).__name__}: {e}); if no run is writing "
                            "to this output, pass --break-lock") from e
        return info, version or info.run_id

    def replace(self, data: bytes, expect: LockInfo, version: str) -> bool:
        """Write ``data`` only if the lock is still ``expect`` (S3: If-Match its ETag)."""
        if storage.is_s3(self.uri):
            from botocore.exceptions import ClientError

            b, k = storage.split_s3(self.uri)
            try:
                storage.s3_client().put_object(Bucket=b, Key=k, Body=data, IfMatch=version)
                return True
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict",
                                                               "NoSuchKey", "412", "409", "404"):
                    return False
                raise storage.s3_errors(self.uri, e) from e
        now, _ = self.read()
        if now is None or now.run_id != expect.run_id:
            return False
        storage.write_bytes(self.uri, data)  # atomic rename; the compare above is the guard on disk
        return True

    def delete(self) -> None:
        storage.delete(self.uri)


class RunLock:
    """``with RunLock(output_root, run_name):`` — held for the whole run."""

    def __init__(self, root: str, run_name: str = "", break_lock: bool = False):
        self.uri = storage.join(root.rstrip("/"), LOCK_NAME)
        self.store = _Store(self.uri)
        self.break_lock = break_lock
        now = time.time()
        self.info = LockInfo(run_id=uuid.uuid4().hex[:12], host=socket.gethostname(), pid=os.getpid(),
                             proc_start=_proc_start(os.getpid()), started=now, heartbeat=now, run_name=run_name)
        self.version = ""
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io = threading.Lock()

    def _body(self) -> bytes:
        return json.dumps(asdict(self.info), sort_keys=True).encode()

    def acquire(self) -> RunLock:
        stale_after = _env_seconds("LMR_LOCK_STALE_S", 120)
        for _ in range(3):
            if self.store.create(self._body()):
                self.version = self.store.read()[1]
                return self
            holder, version = self.store.read()
            if holder is None:
                continue  # released between our create and read: try again
            now = time.time()
            stale = now - holder.heartbeat > stale_after or holder.is_dead_here()
            if not (stale or self.break_lock):
                raise RunLocked(
                    f"output {self.uri.rsplit('/', 1)[0]} is in use by {holder.describe(now)}. Two runs on one "
                    f"output root would corrupt it. Wait for that run; if it is dead, its lock expires "
                    f"{stale_after:.0f} s after its last heartbeat, or pass --break-lock.")
            if self.store.replace(self._body(), holder, version):
                mine, self.version = self.store.read()
                if mine is not None and mine.run_id == self.info.run_id:
                    return self
        raise RunLocked(f"{self.uri}: could not take the run lock (another run keeps taking it)")

    def heartbeat(self) -> None:
        with self._io:
            holder, version = self.store.read()
            if holder is None or holder.run_id != self.info.run_id:
                self.lost = (f"the run lock {self.uri} was taken over by "
                             f"{holder.describe(time.time()) if holder else 'nobody (deleted)'}")
                return
            self.info = LockInfo(**{**asdict(self.info), "heartbeat": time.time()})
            if self.store.replace(self._body(), holder, version):
                self.version = self.store.read()[1]

    def check(self) -> None:
        """Raise if this run no longer holds the lock (called before every commit)."""
        if self.lost is None:
            self.heartbeat()
        if self.lost:
            raise RunLocked(f"stopping before commit: {self.lost}")

    def _beat(self) -> None:
        every = _env_seconds("LMR_LOCK_HEARTBEAT_S", 15)
        while not self._stop.wait(every):
            try:
                self.heartbeat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; check() reports loss
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        with self._io:
            holder, _ = self.store.read()
            if holder is not None and holder.run_id == self.info.run_id:
                self.store.delete()

    def __enter__(self) -> RunLock:
        self.acquire()
        self._thread = threading.Thread(target=self._beat, name="lmr-run-lock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
