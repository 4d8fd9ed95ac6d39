"""Tiny models + word-level tokenizers saved to folders, and small datasets, for CLI tests.

Nothing is downloaded: tokenizers are built with the `tokenizers` library and wrapped in
PreTrainedTokenizerFast; models are built from configs and saved with save_pretrained.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "</s>", "<s>"]
_WORD_TEXT = (
    "the a movie film plot story was is very really quite good great fine lovely bad awful poor boring "
    "alice bob paris london acme corp met in works at visited and with loves city "
    "one two three four five six seven eight nine zero un deux trois quatre cinq six sept huit neuf "
    "question answer name food area price yes no what is : ?"
)
WORDS = _WORD_TEXT.split()
POS, NEG = ["good", "great", "fine", "lovely"], ["bad", "awful", "poor", "boring"]
NUMBERS_EN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NUMBERS_FR = ["zero", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"]


def make_tokenizer(folder: Path, kind: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + sorted(set(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
        )
    elif kind == "t5":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 4)])
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if kind == "bert" else [])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        eos_token="</s>",
        bos_token="<s>",
        model_input_names=names,
    )
    fast.save_pretrained(str(folder))


def vocab_size() -> int:
    return len(SPECIALS) + len(set(WORDS))


def make_model(folder: Path, kind: str) -> Path:
    import torch
    from transformers import (
        BertConfig,
        BertModel,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    torch.manual_seed(0)
    v = vocab_size()
    if kind == "bert":
        model = BertModel(
            BertConfig(
                vocab_size=v,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=37,
                max_position_embeddings=64,
                pad_token_id=0,
            )
        )
    elif kind == "llama":
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=v,
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=128,
                pad_token_id=0,
                bos_token_id=5,
                eos_token_id=4,
            )
        )
    else:
        model = T5ForConditionalGeneration(
            T5Config(
                vocab_size=v,
                d_model=32,
                d_kv=8,
                d_ff=48,
                num_layers=1,
                num_heads=4,
                pad_token_id=0,
                eos_token_id=4,
                decoder_start_token_id=0,
            )
        )
    model.save_pretrained(str(folder))
    make_tokenizer(folder, kind)
    return folder


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def classification_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pos = rng.random() < 0.5
        word = rng.choice(POS if pos else NEG)
        rows.append(
            {
                "text": f"the {rng.choice(['movie', 'film', 'plot'])} was "
                f"{rng.choice(['very', 'quite', 'really'])} {word}",
                "label": "pos" if pos else "neg",
            }
        )
    return rows


def ner_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        who, where = rng.choice(["alice", "bob"]), rng.choice(["paris", "london"])
        rows.append(
            {
                "tokens": [who, "visited", where, "with", "acme", "corp"],
                "tags": ["B-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG"],
            }
        )
    return rows


def lm_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        i = rng.randrange(10)
        rows.append({"prompt": f"question : {NUMBERS_EN[i]} ?", "response": f"answer {NUMBERS_FR[i]}"})
    return rows


def seq2seq_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        idx = [rng.randrange(10) for _ in range(3)]
        rows.append(
            {"source": " ".join(NUMBERS_EN[i] for i in idx), "target": " ".join(NUMBERS_FR[i] for i in idx)}
        )
    return rows


ROWS = {
    "classification": classification_rows,
    "token_classification": ner_rows,
    "causal_lm": lm_rows,
    "seq2seq": seq2seq_rows,
}
MODEL_FOR = {"classification": "bert", "token_classification": "bert", "causal_lm": "llama", "seq2seq": "t5"}
TARGETS = {"bert": ["query", "value"], "llama": ["q_proj", "v_proj"], "t5": ["q", "v"]}


def write_run(root: Path, task: str, model_dir: Path, n_train: int = 64, **train: object) -> Path:
    """Data files and a config for ``task`` under ``root``; returns the config path."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ROWS[task]
    write_jsonl(root / "train.jsonl", rows(n_train, 0))
    write_jsonl(root / "dev.jsonl", rows(16, 1))
    kind = MODEL_FOR[task]
    cfg = {
        "model": str(model_dir),
        "task": task,
        "data": {"train": str(root / "train.jsonl"), "validation": str(root / "dev.jsonl"), "max_length": 32},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "targets": TARGETS[kind]},
        "train": {
            "max_steps": 12,
            "batch_size": 8,
            "lr": 1e-2,
            "eval_every": 6,
            "save_every": 6,
            "log_every": 2,
            "num_threads": 1,
            **train,
        },
        "output_dir": str(root / "run"),
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def make_gguf(path: Path) -> Path:
    """A tiny llama GGUF file (Q8_0 weight matrices, byte-level BPE tokenizer) written with gguf."""
    import gguf
    import numpy as np

    vocab, hidden, ffn, layers, heads, kv_heads = 64, 32, 64, 2, 4, 2
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_rope_dimension_count(hidden // heads)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    letters = [chr(ord("a") + i) for i in range(26)]
    tokens = ["<unk>", "<s>", "</s>", "Ġ", *letters, *("Ġ" + c for c in letters)]
    tokens += [f"t{i}" for i in range(vocab - len(tokens))]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * vocab)
    w.add_token_merges([f"Ġ {c}" for c in letters])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    rng = np.random.default_rng(0)

    def matrix(name: str, rows: int, cols: int) -> None:
        data = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
        q8 = gguf.GGMLQuantizationType.Q8_0
        w.add_tensor(name, gguf.quants.quantize(data, q8), raw_dtype=q8)

    matrix("token_embd.weight", vocab, hidden)
    kv = hidden // heads * kv_heads
    for i in range(layers):
        for name, rows, cols in (
            ("attn_q", hidden, hidden),
            ("attn_k", kv, hidden),
            ("attn_v", kv, hidden),
            ("attn_output", hidden, hidden),
            ("ffn_gate", ffn, hidden),
            ("ffn_up", ffn, hidden),
            ("ffn_down", hidden, ffn),
        ):
            matrix(f"blk.{i}.{name}.weight", rows, cols)
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    matrix("output.weight", vocab, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
