"""S3 faults survived: whole-object reads (Parquet parts), streamed reads (a .zst text object)
and multipart writes through the fault-injecting proxy of tests/faultproxy.py (500/503,
dropped connections, bodies cut off mid-way, slow answers; seeded) in front of a moto
server on loopback. Counts faults injected, operations that returned the right bytes,
and operations that failed (each must be a StorageError naming the object, never wrong data)."""
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import pyarrow as pa  # noqa: E402
import zstandard  # noqa: E402

from faultproxy import FaultPlan, FaultProxy  # noqa: E402
from lmrefinery.core import storage  # noqa: E402


def _moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def main(rounds: int = 100, rate: float = 0.3, seed: int = 19) -> dict:
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      LMR_S3_MULTIPART_BYTES=str(5 << 20))
    proc, url = _moto()
    ops, ok, failed_named, wrong = Counter(), Counter(), Counter(), Counter()
    try:
        os.environ["AWS_ENDPOINT_URL"] = url
        storage.s3_client().create_bucket(Bucket="bench")
        tb = pa.table({"id": [f"d{i}" for i in range(20000)], "text": ["words " * (i % 13) for i in range(20000)]})
        lines = b"".join(f"line {i}\n".encode() for i in range(100000))
        storage.write_parquet(tb, "s3://bench/t.parquet")
        storage.write_bytes("s3://bench/l.txt.zst", zstandard.ZstdCompressor().compress(lines))
        big = os.urandom(11 << 20)
        plan = FaultPlan(seed=seed, rate=rate)
        with FaultProxy(url, plan) as proxy:
            os.environ["AWS_ENDPOINT_URL"] = proxy.url
            for i in range(rounds):
                for op, fn, want in (("parquet_read", lambda: storage.read_parquet("s3://bench/t.parquet"), tb),
                                     ("stream_read", lambda: storage.open_read("s3://bench/l.txt.zst").read(), lines),
                                     ("multipart_write", lambda i=i: (storage.write_bytes(f"s3://bench/big{i}", big),
                                                                     storage.read_bytes(f"s3://bench/big{i}"))[1],
                                     big)):
                    if op == "multipart_write" and i % 5:
                        continue
                    ops[op] += 1
                    try:
                        got = fn()
                    except storage.StorageError:
                        failed_named[op] += 1
                        continue
                    same = got.equals(want) if isinstance(want, pa.Table) else got == want
                    (ok if same else wrong)[op] += 1
        res = {"rate": rate, "seed": seed, "faults_injected": dict(plan.injected),
               "faults_total": sum(plan.injected.values()), "operations": dict(ops), "correct": dict(ok),
               "failed_with_named_error": dict(failed_named), "wrong_data": dict(wrong)}
    finally:
        proc.terminate()
        proc.wait(10)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "s3_faults.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    print(json.dumps(res, indent=1, sort_keys=True))
    return res


if __name__ == "__main__":
    main()
