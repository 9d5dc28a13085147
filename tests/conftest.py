"""Shared fixtures. Real components, started once per test session:
a local Ray instance, a local SparkSession, and moto's S3 server on loopback."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.environ.get("LMR_SHARED_CORPORA", os.path.join(ROOT, "..", "shared", "corpora")))

os.environ.setdefault("LMR_RAY_LOG_LEVEL", "ERROR")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_corpora() -> str:
    if not os.path.isdir(SHARED):
        pytest.fail(f"shared corpora not found at {SHARED} (set LMR_SHARED_CORPORA)")
    return SHARED


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    # s3_server first: Ray's workers inherit the environment (AWS_ENDPOINT_URL) at start
    import ray

    from lmrefinery.engines.ray_engine import ensure_ray

    if not ray.is_initialized():
        ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def fresh_ray_cluster(ray_cluster):
    """The session's local Ray, restarted for one module (a few seconds). Late in a full
    suite run, after some hundred datasets on the session cluster, Ray Train's controller
    twice stalled after reserving its CPUs and never created its placement group (and a
    Ray Data actor pool sat idle the same way); the cause inside Ray is not established.
    The Ray Train modules start from a fresh cluster instead."""
    from lmrefinery.engines.ray_engine import ensure_ray

    ray_cluster.shutdown()
    ensure_ray(num_cpus=2)
    yield ray_cluster


@pytest.fixture(scope="session")
def spark(s3_server):
    # s3_server first: Spark's Python workers inherit the environment at start
    from lmrefinery.engines.spark_engine import get_spark

    s = get_spark("local[2]", 2)
    yield s
    s.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 HTTP server on a loopback port (a real server process, spoken to
    over HTTP by boto3/smart-open through AWS_ENDPOINT_URL)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    old = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    yield url
    proc.terminate()
    proc.wait(10)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    import uuid

    from lmrefinery.core.storage import s3_client

    name = f"t-{uuid.uuid4().hex[:10]}"
    s3_client().create_bucket(Bucket=name)
    return name


def upload_dir(local: str, bucket: str, prefix: str) -> None:
    from lmrefinery.core.storage import s3_client

    for root, _, files in os.walk(local):
        for f in files:
            p = os.path.join(root, f)
            key = f"{prefix}/{os.path.relpath(p, local)}"
            s3_client().upload_file(p, bucket, key)


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory) -> str:
    from lmrefinery.samples.generate import write_samples

    d = str(tmp_path_factory.mktemp("samples"))
    write_samples(d, seed=0, docs=120)
    return d


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, shared_corpora):
    """A tiny random Llama with a byte-level BPE trained here on real instruction text
    (Alpaca + BELLE), a ChatML template and eos <|im_end|>."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    S = os.path.join(shared_corpora, "instructions")
    texts = []
    for r in json.load(open(os.path.join(S, "alpaca_data_5k_subset.json")))[:400]:
        texts += [r["instruction"], r["output"]]
    for line in open(os.path.join(S, "belle_open_source_1k.jsonl")).readlines()[:150]:
        r = json.loads(line)
        texts += [r["instruction"], r["output"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    d = str(tmp_path_factory.mktemp("tiny-llama"))
    hf.save_pretrained(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(hf), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                      eos_token_id=hf.eos_token_id, pad_token_id=hf.pad_token_id, bos_token_id=None,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d
