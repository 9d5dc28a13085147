"""Tokenizers: train a byte-level BPE, save it as a Hugging Face tokenizer
directory with a chat template, load one back, and encode documents and
conversations (with loss masks) the way the shards store them.

Chat format (the template saved with the tokenizer; role markers are special
tokens so a turn's content is always encoded on its own)::

    [bos?] <|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|> ... <eos>

Loss mask: 1 on the tokens of assistant content and the assistant's ``<|end|>``
(its end-of-turn token); 0 on role markers, system/user/tool turns, bos and the
trailing eos. Pretraining documents are ``encode(text) + [eos]``, never truncated.
Literal special-token strings inside text (``<|endoftext|>`` in a web page) are
encoded as ordinary text, never as the control token.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..core import storage

ROLE_FORMAT = "<|{role}|>"
DEFAULT_SPECIALS = {"eos": "<|endoftext|>", "pad": "<|pad|>", "bos": "<|bos|>", "eot": "<|end|>"}
ROLES = ("system", "user", "assistant", "tool")
SIDECAR = "lmrefinery_tokenizer.json"
_EOS_GUESSES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>", "[SEP]")


def _jinja_str(text: str) -> str:
    """A Jinja string literal (JSON escapes are Jinja escapes for ASCII text)."""
    return json.dumps(text)


def chat_template(eot: str, role_format: str = ROLE_FORMAT, bos: str | None = None) -> str:
    """Jinja chat template matching `ChatEncoder.encode_conversation` (without the trailing eos).
    With ``tools`` the schemas go into the system turn; an assistant's ``tool_calls`` follow its
    text as <tool_call> blocks; tool turns are wrapped in <tool_response> (see instruct/tools.py)."""
    from ..instruct.tools import TOOLS_FOOTER, TOOLS_HEADER

    pre, post = role_format.split("{role}")
    P, Q, E = _jinja_str(pre), _jinja_str(post), _jinja_str(eot)
    b = "{{ bos_token }}" if bos else ""
    tools_part = (
        "{%- set ns = namespace(msgs=messages) -%}"
        "{%- if tools -%}"
        "{{ " + P + " + 'system' + " + Q + " }}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{{ (messages[0]['content'] or '') + '\\n\\n' }}{%- set ns.msgs = messages[1:] -%}{%- endif -%}"
        "{{ " + _jinja_str(TOOLS_HEADER) + " }}"
        "{%- for t in tools -%}{{ '\\n' + ((t['function'] if t['function'] is defined else t) | tojson) }}"
        "{%- endfor -%}{{ " + _jinja_str(TOOLS_FOOTER) + " + " + E + " }}"
        "{%- endif -%}")
    calls = ("{%- for tc in m['tool_calls'] -%}"
             "{%- set f = tc['function'] if tc['function'] is defined else tc -%}"
             "{%- if m['content'] or not loop.first -%}{{ '\\n' }}{%- endif -%}"
             "{{ '<tool_call>\\n' + ({'name': f['name'], 'arguments': f['arguments']} | tojson) "
             "+ '\\n</tool_call>' }}{%- endfor -%}")
    return (b + tools_part + "{%- for m in ns.msgs -%}{{ " + P + " + m['role'] + " + Q + " }}"
            "{%- if m['role'] == 'tool' -%}{{ '<tool_response>\\n' + (m['content'] or '') + '\\n</tool_response>' }}"
            "{%- else -%}{{ m['content'] or '' }}{%- if m['tool_calls'] -%}" + calls + "{%- endif -%}{%- endif -%}"
            "{{ " + E + " }}{%- endfor -%}{%- if add_generation_prompt -%}{{ " + P + " + 'assistant' + " + Q
            + " }}{%- endif -%}")


def file_sha256(path: str) -> str:
    return hashlib.sha256(storage.read_bytes(path)).hexdigest()


# ---------------------------------------------------------------- training
def train_bpe(texts: Iterable[str], vocab_size: int = 32000, min_frequency: int = 2,
              specials: dict[str, str] | None = None, roles: Iterable[str] = ROLES):
    """Byte-level BPE over an iterator of texts. All 256 byte symbols are in the
    initial alphabet, so any UTF-8 text (Chinese included) encodes without an
    unknown token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = {**DEFAULT_SPECIALS, **(specials or {})}
    special_list = _special_list(specials, roles)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_list,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, tr)
    return tok


def _special_list(specials: dict[str, str], roles: Iterable[str]) -> list[str]:
    out = []
    for k in ("eos", "pad", "bos", "eot"):
        if specials.get(k) and specials[k] not in out:
            out.append(specials[k])
    for r in roles:
        t = ROLE_FORMAT.format(role=r)
        if t not in out:
            out.append(t)
    return out


def save_hf(tok, out_dir: str, specials: dict[str, str] | None = None, roles: Iterable[str] = ROLES,
            extra: dict | None = None) -> str:
    """Save as an HF tokenizer directory (`AutoTokenizer.from_pretrained(out_dir)`),
    with the chat template and a small sidecar naming our special tokens."""
    from transformers import PreTrainedTokenizerFast

    specials = {**DEFAULT_SPECIALS, **(specials or {})}
    roles = list(roles)
    extra_tokens = [specials["eot"]] + [ROLE_FORMAT.format(role=r) for r in roles]
    f = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=specials.get("bos"), eos_token=specials["eos"],
                                pad_token=specials.get("pad"), additional_special_tokens=extra_tokens)
    f.chat_template = chat_template(specials["eot"])
    os.makedirs(out_dir, exist_ok=True)
    f.save_pretrained(out_dir)
    side = {"specials": specials, "roles": roles, "role_format": ROLE_FORMAT, "vocab_size": tok.get_vocab_size(),
            **(extra or {})}
    with open(os.path.join(out_dir, SIDECAR), "w", encoding="utf-8") as fh:
        json.dump(side, fh, indent=1, ensure_ascii=False, sort_keys=True)
    return out_dir


# ---------------------------------------------------------------- loading / encoding
@dataclass
class ChatEncoder:
    """A `tokenizers.Tokenizer` plus the ids of our special tokens. Picklable by path."""

    path: str                      # tokenizer.json path (local)
    eos_id: int
    bos_id: int | None = None
    pad_id: int | None = None
    eot_id: int | None = None
    role_ids: dict[str, list[int]] = field(default_factory=dict)
    eot_ids: list[int] = field(default_factory=list)
    vocab_size: int = 0
    add_bos: bool = False
    _tok: object = None

    @property
    def tok(self):
        if self._tok is None:
            from tokenizers import Tokenizer

            self._tok = _configure(Tokenizer.from_file(self.path))
        return self._tok

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_tok"] = None
        return d

    def encode_texts(self, texts: list[str]) -> list[np.ndarray]:
        """Pretraining documents: ids + [eos] (bos first when add_bos). No truncation."""
        encs = self.tok.encode_batch_fast(texts, add_special_tokens=False) if hasattr(self.tok, "encode_batch_fast") \
            else self.tok.encode_batch(texts, add_special_tokens=False)
        out = []
        for e in encs:
            ids = e.ids
            if self.add_bos and self.bos_id is not None:
                ids = [self.bos_id] + ids
            a = np.empty(len(ids) + 1, np.int32)
            a[:-1] = ids
            a[-1] = self.eos_id
            out.append(a)
        return out

    def encode_conversation(self, messages: list[dict], tools=None) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and loss mask of a conversation rendered with the chat template, + eos.
        Loss on assistant turns (their text, their function calls and the end-of-turn token);
        none on system, user and tool (observation) turns. ``tools`` (the conversation's
        function schemas) are rendered into the system turn."""
        from ..instruct.tools import has_tools, lower_messages

        if tools or has_tools(messages):
            messages = lower_messages(messages, tools)
        contents = [m.get("content") or "" for m in messages]
        encs = self.tok.encode_batch(contents, add_special_tokens=False) if contents else []
        ids: list[int] = []
        mask: list[int] = []
        if self.add_bos and self.bos_id is not None:
            ids.append(self.bos_id)
            mask.append(0)
        for m, e in zip(messages, encs):
            role = m.get("role")
            if role not in self.role_ids:
                raise ValueError(f"unknown role {role!r}")
            train = 1 if role == "assistant" else 0
            head = self.role_ids[role]
            ids += head
            mask += [0] * len(head)
            ids += e.ids
            mask += [train] * len(e.ids)
            ids += self.eot_ids
            mask += [train] * len(self.eot_ids)
        ids.append(self.eos_id)
        mask.append(0)
        return np.asarray(ids, np.int32), np.asarray(mask, np.uint8)

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)


def _configure(t):
    t.no_truncation()
    t.no_padding()
    try:
        t.encode_special_tokens = True   # "<|end|>" in a text is text, not a control token
    except AttributeError:  # pragma: no cover - old tokenizers
        pass
    return t


def tokenizer_json_of(path: str) -> str:
    """`tokenizer.json` inside an HF directory, or the file itself."""
    if os.path.isdir(path):
        p = os.path.join(path, "tokenizer.json")
        if not os.path.exists(p):
            raise FileNotFoundError(f"{path}: no tokenizer.json "
                                    "(only fast / tokenizers-backed tokenizers are supported)")
        return p
    if not os.path.exists(path):
        raise FileNotFoundError(f"tokenizer not found: {path}")
    return path


def load_encoder(path: str, add_bos: bool = False, eos_token: str | None = None) -> ChatEncoder:
    """Load from an HF tokenizer directory or a bare tokenizer.json. Special tokens
    come from our sidecar, then tokenizer_config.json, then well-known names."""
    from tokenizers import Tokenizer

    tj = tokenizer_json_of(path)
    d = os.path.dirname(tj)
    tok = Tokenizer.from_file(tj)
    specials: dict[str, str | None] = {}
    side = os.path.join(d, SIDECAR)
    cfg = os.path.join(d, "tokenizer_config.json")
    if os.path.exists(side):
        with open(side, encoding="utf-8") as f:
            specials.update(json.load(f)["specials"])
    elif os.path.exists(cfg):
        with open(cfg, encoding="utf-8") as f:
            c = json.load(f)
        for k in ("eos", "bos", "pad"):
            v = c.get(f"{k}_token")
            if isinstance(v, dict):
                v = v.get("content")
            if v:
                specials[k] = v
    if eos_token:
        specials["eos"] = eos_token
    class _Vocab:  # token -> id lookups without materialising the whole vocabulary
        def __contains__(self, t):
            return tok.token_to_id(t) is not None

        def __getitem__(self, t):
            i = tok.token_to_id(t)
            if i is None:
                raise KeyError(t)
            return i

        def get(self, t, default=None):
            i = tok.token_to_id(t)
            return default if i is None else i

    vocab = _Vocab()
    if not specials.get("eos"):
        specials["eos"] = next((t for t in _EOS_GUESSES if t in vocab), None)
    if not specials.get("eos") or specials["eos"] not in vocab:
        raise ValueError(f"{path}: cannot find the end-of-document token; pass eos_token")

    def tid(t):
        return vocab.get(t) if t else None

    def piece(text: str) -> list[int]:  # a special token if the vocabulary has it, else its text
        if text in vocab:
            return [vocab[text]]
        return tok.encode(text, add_special_tokens=False).ids

    eot = specials.get("eot") or specials["eos"]
    assert eot is not None  # checked above: the vocabulary has the end-of-document token
    role_ids = {r: piece(ROLE_FORMAT.format(role=r)) for r in ROLES}
    enc = ChatEncoder(path=os.path.abspath(tj), eos_id=vocab[specials["eos"]], bos_id=tid(specials.get("bos")),
                      pad_id=tid(specials.get("pad")), eot_id=tid(eot), role_ids=role_ids, eot_ids=piece(eot),
                      vocab_size=tok.get_vocab_size(with_added_tokens=True), add_bos=add_bos)
    enc._tok = _configure(tok)  # reuse the loaded tokenizer (loading a 100k vocab takes a while)
    return enc


def install_tokenizer(src: str, dst_dir: str) -> str:
    """Copy a tokenizer (HF dir or tokenizer.json) into `dst_dir` (local or s3://), so a
    dataset carries the exact tokenizer it was made with. Returns dst_dir."""
    if os.path.isdir(src):
        files = [os.path.join(src, f) for f in sorted(os.listdir(src)) if os.path.isfile(os.path.join(src, f))]
    else:
        files = [src]
    for f in files:
        name = "tokenizer.json" if not os.path.isdir(src) else os.path.basename(f)
        with open(f, "rb") as fh:
            storage.write_bytes(storage.join(dst_dir, name), fh.read())
    return dst_dir


def fetch_tokenizer(uri_dir: str, local_dir: str) -> str:
    """Make a local copy of a tokenizer directory kept on s3:// (workers need a file)."""
    if not storage.is_s3(uri_dir):
        return uri_dir
    os.makedirs(local_dir, exist_ok=True)
    for f in storage.list_files(uri_dir.rstrip("/") + "/"):
        with open(os.path.join(local_dir, f.rsplit("/", 1)[1]), "wb") as fh:
            fh.write(storage.read_bytes(f))
    return local_dir


def tokens_per_char(enc: ChatEncoder, texts: list[str]) -> float | None:
    texts = [t for t in texts if t]
    if not texts:
        return None
    n_chars = sum(len(t) for t in texts)
    n_tok = sum(len(a) - 1 for a in enc.encode_texts(texts))
    return round(n_tok / n_chars, 4)


__all__ = ["train_bpe", "save_hf", "load_encoder", "ChatEncoder", "chat_template", "install_tokenizer",
           "fetch_tokenizer", "tokens_per_char", "file_sha256"]
