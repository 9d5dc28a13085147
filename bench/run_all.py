"""Run every benchmark in bench/ (each writes bench/results/<name>.json)."""
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
failed = []
for f in sorted(os.listdir(here)):
    if f.endswith(".py") and f not in ("run_all.py",) and not f.startswith("_"):
        print(f"== {f}", flush=True)
        if subprocess.run([sys.executable, os.path.join(here, f)], cwd=os.path.dirname(here)).returncode:
            failed.append(f)
if failed:
    sys.exit(f"failed: {failed}")
