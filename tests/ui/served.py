"""Tiny models for the real ``lorakit serve`` behind the page: built from configs, nothing downloaded.

- a causal LM base with two adapters of different nonzero weights (greedy answers that differ);
- an encoder base with a classifier adapter and an NER adapter;
- ``html-lm``: a causal LM whose every generated token is a piece of HTML/script, so the page's
  handling of hostile model output is tested on what the real server streams.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tests.serving.conftest import write_encoder_adapter, write_lm_adapter

import tiny_assets

HTML_TOKENS = ['<script>alert("pwned")</script>', "<img src=x onerror=alert(2)>", "<b>bold?</b>"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def build_models(root: Path) -> dict[str, Path]:
    """Folders: lm (base), lm-a, lm-b (its adapters), enc (base), sentiment, ner, html-lm (base)."""
    lm = tiny_assets.make_model(root / "lm", "llama")
    enc = tiny_assets.make_model(root / "enc", "bert")
    return {
        "lm": lm,
        "lm-a": write_lm_adapter(lm, root / "adapters" / "concise", 4, 11, ["q_proj", "v_proj"]),
        "lm-b": write_lm_adapter(lm, root / "adapters" / "verbose", 8, 12, ["q_proj", "k_proj", "o_proj"]),
        "enc": enc,
        "sentiment": write_encoder_adapter(enc, root / "sentiment", "classification", ["neg", "pos"], 21),
        "ner": write_encoder_adapter(enc, root / "ner", "token_classification", NER_LABELS, 22),
        "html-lm": make_html_lm(root / "html-lm"),
    }


def make_html_lm(folder: Path) -> Path:
    """A tiny Llama whose output head can only prefer HTML tokens.

    The head's rows are zero except +w for the first HTML token and -w for the second: for any
    hidden state one of the two scores >= 0 = every other token's score, so greedy decoding emits
    HTML and never end-of-sequence.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["write", "some", "html", "please"]
    vocab = {w: i for i, w in enumerate(tiny_assets.SPECIALS + words + HTML_TOKENS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="</s>", bos_token="<s>"
    ).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=5,
        eos_token_id=4,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        w = torch.randn(config.hidden_size)
        model.lm_head.weight.zero_()
        model.lm_head.weight[vocab[HTML_TOKENS[0]]] = w
        model.lm_head.weight[vocab[HTML_TOKENS[1]]] = -w
    model.save_pretrained(str(folder))
    return folder
