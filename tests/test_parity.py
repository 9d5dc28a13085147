"""Same results wherever it runs. The mini recipe (Chinese and Japanese sample
documents included) run the ways users launch it must commit the same
manifests — same counts and reasons, same part files byte for byte — as the
local CLI run from the checkout:

- an installed wheel in a fresh virtualenv, run outside the checkout (`lmrefinery demo`);
- `ray job submit --working-dir . --runtime-env deploy/ray/runtime_env.yaml` to a separate head;
- `deploy/spark/submit.sh` (spark-submit, local master, the package as a --py-files zip);
- a two-node Ray cluster (head + a node joined with `ray start --address`, own temp dirs)
  reading and writing S3, with tasks shown to run on both nodes; and the same cluster
  losing its second node in the middle of a map stage and of `dedup`.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from lmrefinery.core import storage
from lmrefinery.jobs.protocol import parse_tagged
from ray_nodes import RAY, RayNode, runtime_env_file, wait_for_nodes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
MINI = os.path.join(ROOT, "conf", "pipelines", "mini.yaml")
DOCS, SEED = 120, 0


pytestmark = pytest.mark.slow


def digest(out: str) -> dict:
    """What must not depend on how a run was launched: per stage, the counts by
    reason, the counters and every committed file's name, rows and sha256."""
    res = {}
    for m_path in sorted(storage.list_files(storage.join(out, "stages", "*", "_manifest.json"))):
        m = json.loads(storage.read_bytes(m_path))
        files = [(f["path"], f["rows"], f["sha256"]) for f in m["outputs"] + m["rejects"]]
        res[f"{m['index']:02d}-{m['stage']}"] = {"counts": m["counts"], "counters": m["counters"],
                                                 "files": files, "artifacts": m.get("artifacts")}
    assert res, f"no committed stage under {out}"
    return res


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYSPARK_", "SPARK_"))}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def _lmr(args: list[str], env: dict, cwd: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(BIN, "lmrefinery"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> str:
    from lmrefinery.samples.generate import write_samples

    d = str(tmp_path_factory.mktemp("parity") / "samples")
    write_samples(d, seed=SEED, docs=DOCS)
    return d


@pytest.fixture(scope="module")
def reference_run(samples, tmp_path_factory) -> str:
    """The local CLI run from the checkout (in-process engine); its output folder."""
    runs = tmp_path_factory.mktemp("ref-runs")
    r = _lmr(["run", MINI, "--engine", "local", "--quiet"], _clean_env(LMR_SAMPLES=samples, LMR_RUNS=str(runs)),
             cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return str(runs / "mini")


@pytest.fixture(scope="module")
def reference(reference_run) -> dict:
    return digest(reference_run)


def test_reference_keeps_chinese_and_japanese(reference_run):
    # the regression this file guards: launched elsewhere the quality stage kept 0 zh / 0 ja
    langs: dict = {}
    for p in sorted(glob.glob(os.path.join(reference_run, "stages", "*-quality", "data", "*.parquet"))):
        for lang in pq.read_table(p, columns=["lang"]).column("lang").to_pylist():
            langs[lang] = langs.get(lang, 0) + 1
    assert langs.get("zh", 0) >= 10 and langs.get("ja", 0) >= 1, langs


# ------------------------------------------------------------------ installed wheel
@pytest.fixture(scope="module")
def wheel_file(tmp_path_factory) -> str:
    """The wheel built from a clean copy of the sources (a build/ folder left in the
    checkout by an earlier build could carry files the package-data patterns miss)."""
    import shutil

    base = tmp_path_factory.mktemp("dist")
    src = base / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, f), src / f)
    shutil.copytree(os.path.join(ROOT, "lib"), src / "lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(base), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    whl = glob.glob(str(base / "lmrefinery-*.whl"))
    assert len(whl) == 1, whl
    return whl[0]


def test_wheel_ships_every_data_file_of_the_package(wheel_file):
    """Every non-Python file under lib/lmrefinery is in the wheel (a new data file with
    an extension the package-data patterns miss would vanish from installs)."""
    import zipfile

    names = set(zipfile.ZipFile(wheel_file).namelist())
    lib = os.path.join(ROOT, "lib")
    tracked = subprocess.run(["git", "ls-files", "lmrefinery"], cwd=lib, capture_output=True, text=True,
                             check=True).stdout.split()
    data = [f for f in tracked if not f.endswith(".py")]
    assert "lmrefinery/quality/languages/zh.yaml" in data
    missing = [f for f in data if f not in names]
    assert not missing, f"not in the wheel: {missing}"


@pytest.fixture(scope="module")
def wheel_venv(wheel_file, tmp_path_factory) -> str:
    """A fresh virtualenv holding the wheel built from this checkout, installed
    non-editable. Its dependencies come from the test environment's
    site-packages, added *after* the venv's own and without this checkout's
    editable path, so `lmrefinery` can only be imported from the wheel."""
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dev_site = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
    lib = os.path.join(ROOT, "lib")
    with open(os.path.join(site, "zz_test_deps.pth"), "w") as f:
        f.write(f"import site, sys; site.addsitedir({dev_site!r}); "
                f"sys.path[:] = [p for p in sys.path if p.rstrip('/') != {lib!r}]\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                        "--no-deps", "--no-index", wheel_file], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return str(venv)


def test_installed_wheel_outside_the_checkout_matches(wheel_venv, reference, samples, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _clean_env(PATH=os.path.join(wheel_venv, "bin") + os.pathsep + os.environ["PATH"])
    env.pop("VIRTUAL_ENV", None)
    where = subprocess.run([os.path.join(wheel_venv, "bin", "python"), "-c",
                            "import lmrefinery, importlib.resources as r; print(lmrefinery.__file__); "
                            "print(sorted(f.name for f in r.files('lmrefinery.quality').joinpath('languages').iterdir()))"],
                           cwd=str(work), env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    path, langs = where.stdout.strip().splitlines()
    assert path.startswith(wheel_venv) and not path.startswith(os.path.join(ROOT, "lib")), path
    assert "zh.yaml" in langs and "ja.yaml" in langs
    # the instruction path's package data came along too (templates, taxonomy, refusal lists)
    instruct = subprocess.run([os.path.join(wheel_venv, "bin", "python"), "-c",
                               "from lmrefinery.instruct.templates import load_templates; "
                               "from lmrefinery.instruct.normalize import load_taxonomy; "
                               "from lmrefinery.instruct.filters import load_phrases; "
                               "t = load_templates(); print(sorted(t)); print(sorted(t['nli']['templates'])); "
                               "print(len(load_taxonomy()['categories']), len(load_phrases('refusals_zh.txt')))"],
                              cwd=str(work), env=env, capture_output=True, text=True, timeout=120)
    assert instruct.returncode == 0, instruct.stderr[-2000:]
    tasks, nli_langs, sizes = instruct.stdout.strip().splitlines()
    assert "'translation'" in tasks and "'zh'" in nli_langs and all(int(n) > 0 for n in sizes.split())
    # the crawl recipe ships too, and a bare name finds it (nothing of that name in the folder)
    crawl = subprocess.run([os.path.join(wheel_venv, "bin", "python"), "-c",
                            "from lmrefinery.core.recipe import load_recipe, packaged_recipe; "
                            "r = load_recipe('cc-snapshot'); print(packaged_recipe('cc-snapshot')); "
                            "print(r.inputs[0].options['extractor'], [s.stage for s in r.stages][-1])"],
                           cwd=str(work), env=env, capture_output=True, text=True, timeout=120)
    assert crawl.returncode == 0, crawl.stderr[-2000:]
    crawl_file, crawl_shape = crawl.stdout.strip().splitlines()
    assert crawl_file.startswith(wheel_venv) and crawl_shape == "resiliparse tokenize", crawl.stdout
    # `lmrefinery demo` as a new user runs it: the packaged mini recipe on local Ray
    r = subprocess.run([os.path.join(wheel_venv, "bin", "lmrefinery"), "demo", "--docs", str(DOCS),
                        "--seed", str(SEED), "--quiet"], cwd=str(work), env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert digest(str(work / "runs" / "mini")) == reference
    with open(work / "samples" / "labels.jsonl", "rb") as a, open(os.path.join(samples, "labels.jsonl"), "rb") as b:
        assert a.read() == b.read()  # same sample shards as the reference's


def test_installed_wheel_eval_matches_the_checkout(wheel_venv, shared_corpora, tmp_path):
    """`lmrefinery eval` from the wheel, outside the checkout, on a tiny Llama saved here:
    the same documents, tokens and perplexity as in-process evaluation in the checkout."""
    import re

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmrefinery.evals.perplexity import perplexity
    from lmrefinery.tokenize.tokenizer import save_hf, train_bpe
    from lmrefinery.train.export import load_tokenizer

    with open(os.path.join(shared_corpora, "books", "pg11_alice_in_wonderland_en.txt"), encoding="utf-8") as f:
        paras = [p for p in (re.sub(r"\s+", " ", x).strip() for x in re.split(r"\n\s*\n", f.read())) if len(p) > 80]
    tok = load_tokenizer(save_hf(train_bpe(paras[:300], vocab_size=500), str(tmp_path / "tok")))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128))
    mdir = str(tmp_path / "model")
    model.save_pretrained(mdir)
    tok.save_pretrained(mdir)
    docs = paras[300:320]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _clean_env(PATH=os.path.join(wheel_venv, "bin") + os.pathsep + os.environ["PATH"])
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run([os.path.join(wheel_venv, "bin", "lmrefinery"), "eval", mdir, "--text",
                        f"alice={tmp_path / 'docs.jsonl'}", "--context", "64", "--out", str(work / "eval.json")],
                       cwd=str(work), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    got = json.loads((work / "eval.json").read_text())["perplexity"][0]
    direct = perplexity(mdir, texts=docs, context=64)
    assert got["docs"] == len(docs) and got["tokens"] > 500
    assert got["ppl"] == pytest.approx(direct.ppl, rel=1e-6)


def test_missing_package_data_is_an_error_before_any_stage(wheel_venv, samples, tmp_path):
    import shutil

    site = glob.glob(os.path.join(wheel_venv, "lib", "python*", "site-packages", "lmrefinery"))[0]
    moved = tmp_path / "languages"
    shutil.move(os.path.join(site, "quality", "languages"), moved)
    try:
        env = _clean_env(LMR_SAMPLES=samples, LMR_RUNS=str(tmp_path / "runs"))
        r = subprocess.run([os.path.join(wheel_venv, "bin", "lmrefinery"), "run", MINI, "--engine", "local"],
                           cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.move(str(moved), os.path.join(site, "quality", "languages"))
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "lmrefinery/quality/languages is missing" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "runs" / "mini" / "stages"), "a stage ran before the error"


# ------------------------------------------------------------------ ray job submit
def test_ray_job_submit_matches(reference, samples, tmp_path):
    head = RayNode(num_cpus=2)
    try:
        runs = tmp_path / "runs"
        rt = runtime_env_file(tmp_path, LMR_SAMPLES=samples, LMR_RUNS=str(runs))
        r = subprocess.run([RAY, "job", "submit", "--address", head.address, "--submission-id", "lmr-parity",
                            "--working-dir", ".", "--runtime-env", rt, "--",
                            "python", "jobs/run_recipe.py", "conf/pipelines/mini.yaml", "--quiet"],
                           cwd=ROOT, env=head.client_env(), capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        result = parse_tagged(r.stdout)
        assert result is not None, r.stdout[-3000:]
        # the job imported the package that Ray uploaded (py_modules), not this checkout
        assert result["lmrefinery"].startswith(head.tmp), result["lmrefinery"]
        assert digest(str(runs / "mini")) == reference
    finally:
        head.stop()


# ------------------------------------------------------------------ spark-submit
def test_spark_submit_matches(reference, samples, tmp_path):
    env = _clean_env(LMR_SAMPLES=samples, LMR_RUNS=str(tmp_path / "spark"), SPARK_MASTER="local[2]",
                     SPARK_SUBMIT=os.path.join(BIN, "spark-submit"), PYSPARK_PYTHON=sys.executable,
                     PYSPARK_DRIVER_PYTHON=sys.executable)
    env["JOB"] = "run_recipe"
    r = subprocess.run(["bash", "deploy/spark/submit.sh", "conf/pipelines/mini.yaml", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    res = parse_tagged(r.stdout)
    assert res["engine"] == "spark" and res["spark_master"] == "local[2]"
    # the driver imported the package from the --py-files zip (package data read from inside it)
    assert res["lmrefinery"].endswith("lmrefinery-pyfiles.zip/lmrefinery"), res["lmrefinery"]
    assert digest(res["output"]) == reference


# ------------------------------------------------------------------ two nodes, S3, node loss
@pytest.fixture(scope="module")
def s3_samples(samples, s3_server) -> str:
    from conftest import upload_dir
    from lmrefinery.core.storage import s3_client

    s3_client().create_bucket(Bucket="parity")
    upload_dir(samples, "parity", "samples")
    return "s3://parity/samples"


class TwoNodes:
    """A head and a second node (1 CPU each, so two concurrent tasks must use
    both), with the S3 endpoint in the cluster's environment."""

    def __init__(self, s3_url: str):
        aws = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
        self.env_extra = dict(aws, AWS_ENDPOINT_URL=s3_url)
        self.head = RayNode(num_cpus=1, env_extra=self.env_extra)
        self.second = None
        self.add_second()

    def add_second(self) -> None:
        self.second = RayNode(head=self.head, num_cpus=1, env_extra=self.env_extra)
        wait_for_nodes(self.head, 2)

    def run(self, output: str, samples: str, cwd: str) -> subprocess.Popen:
        env = self.head.driver_env(LMR_SAMPLES=samples, LMR_RUNS=output, **self.env_extra)
        return subprocess.Popen([os.path.join(BIN, "lmrefinery"), "run", MINI, "--quiet"], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self.second:
            self.second.stop()
        self.head.stop()


@pytest.fixture(scope="module")
def two_nodes(s3_server):
    c = TwoNodes(s3_server)
    yield c
    c.stop()


def test_two_node_cluster_on_s3_matches_and_uses_both_nodes(two_nodes, s3_samples, reference, tmp_path):
    p = two_nodes.run("s3://parity/runs-2n", s3_samples, cwd=str(tmp_path))
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, out[-3000:] + err[-3000:]
    stats = json.loads(storage.read_bytes("s3://parity/runs-2n/mini/stats.json"))
    assert len(stats["nodes"]) == 2, stats.get("nodes")
    assert digest("s3://parity/runs-2n/mini") == reference


def _wait_for_key(prefix: str, marker: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Until an object under ``prefix`` whose key contains ``marker`` exists (the stage is under way)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {prefix}*{marker}* appeared: {proc.stderr.read()[-3000:]}")
        try:
            if any(marker in k for k in storage.list_files(prefix + "**")):
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{prefix}*{marker}* did not appear")


@pytest.mark.parametrize("stage,marker", [("02-length_filter", "/_parts/"), ("07-dedup", "/_work/")])
def test_losing_a_node_mid_stage_then_rerun_matches(two_nodes, s3_samples, reference, tmp_path, stage, marker):
    """SIGKILL every process of the second node while a map stage (length_filter)
    or the global dedup stage is running. The run either finishes on the head
    or fails with a message; a re-run then commits exactly the clean run's bytes."""
    out = f"s3://parity/kill-{stage}"
    if two_nodes.second is None or not two_nodes.second.processes():
        two_nodes.add_second()
    p = two_nodes.run(out, s3_samples, cwd=str(tmp_path))
    _wait_for_key(f"{out}/mini/stages/{stage}/", marker, p)
    assert two_nodes.second.kill() > 0
    two_nodes.second = None
    stdout, stderr = p.communicate(timeout=900)
    if p.returncode != 0:
        # a failure must say what happened, not leave a silent half result
        assert "lmrefinery: error" in stderr or "Error" in stderr, stderr[-3000:]
    # whatever the first attempt did, a re-run (on the surviving node) completes to the same bytes
    p2 = two_nodes.run(out, s3_samples, cwd=str(tmp_path))
    out2, err2 = p2.communicate(timeout=900)
    assert p2.returncode == 0, out2[-3000:] + err2[-3000:]
    assert digest(f"{out}/mini") == reference
    print(f"node killed during {stage}: first attempt exit {p.returncode}")
