"""The run configuration: typed sections validated before anything heavy loads."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from lorakit.config import LoraConfig
from lorakit.layers.gemm import MatmulBackend
from lorakit.quant import QuantConfig

TaskName = Literal["classification", "token_classification", "causal_lm", "seq2seq"]
TASKS: tuple[str, ...] = ("classification", "token_classification", "causal_lm", "seq2seq")
PATH_KEYS = ("train", "validation", "test")
"""The data keys that name files."""


class Section(BaseModel):
    """Unknown keys are errors so that typos never pass silently."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class DataSection(Section):
    train: str | None = None
    """Training file (.jsonl .json .csv .tsv .parquet, CoNLL .conll/.txt) or a saved HF datasets dir.
    Relative paths in a config file are relative to the config file's folder."""
    validation: str | None = None
    """Validation file; or set validation_split to carve it out of the training data."""
    test: str | None = None
    """Optional test file, used by `lorakit eval --split test`."""
    parallel_suffixes: list[str] | None = Field(default=None, min_length=2)
    """Line-aligned text files (Moses style): each split path is a stem, and <stem>.<suffix> is
    read for every suffix, as a field of that name; e.g. [en, de] reads train.en and train.de."""
    validation_split: float | None = Field(default=None, gt=0, lt=1)
    """Fraction of the training data held out for validation when no validation file is given."""
    split_group_field: str | None = None
    """Keep records sharing this field's value on the same side of validation_split (e.g. `mr`)."""
    text_field: str = "text"
    """Input text column (classification)."""
    text_pair_field: str | None = None
    """Second text column for sentence-pair classification."""
    label_field: str = "label"
    """Label column (classification): strings or integers."""
    tokens_field: str = "tokens"
    """Word list column (token_classification)."""
    tags_field: str = "tags"
    """Per-word tag list column (token_classification, BIO/IOB2 tags)."""
    prompt_field: str = "prompt"
    """Prompt column (causal_lm)."""
    response_field: str = "response"
    """Response column (causal_lm); loss is computed on these tokens only."""
    messages_field: str | None = None
    """Chat column holding a list of {role, content} (causal_lm); replaces prompt/response."""
    prompt_prefix: str = ""
    """Text put before every prompt (causal_lm, with or without a chat template), e.g.
    'Translate English to German: '."""
    prompt_template: str = "{prompt}\n"
    """How a prompt is written when the tokenizer has no chat template; must contain {prompt}."""
    use_chat_template: bool = True
    """Use the tokenizer's chat template when it has one (causal_lm)."""
    source_field: str = "source"
    """Source text column (seq2seq)."""
    target_field: str = "target"
    """Target text column (seq2seq)."""
    source_prefix: str = ""
    """Text put before every source, e.g. 'translate English to German: ' for T5."""
    max_length: int = Field(default=128, ge=4)
    """Maximum tokens per example (longer inputs are truncated)."""
    max_target_length: int = Field(default=128, ge=2)
    """Maximum target tokens (seq2seq)."""
    packing: bool = False
    """Concatenate causal_lm examples into blocks of max_length tokens."""
    max_train_samples: int | None = Field(default=None, ge=1)
    """Use only the first N training records."""
    max_eval_samples: int | None = Field(default=None, ge=1)
    """Use only the first N evaluation records."""
    strict_labels: bool = True
    """Refuse empty, list and object label values (classification), naming the record; false: an
    empty label is a class '' of its own and lists / objects become classes named by their JSON."""

    _written: dict[str, str] = PrivateAttr(default_factory=dict)
    """train / validation / test as written in the config file, before they were made absolute."""

    def written_path(self, key: str) -> str | None:
        """A data path as the config file wrote it, when it was relative to the config's folder."""
        return self._written.get(key)

    def remember_written(self, written: dict[str, str]) -> None:
        self._written = {k: v for k, v in written.items() if k in PATH_KEYS}

    @field_validator("prompt_template")
    @classmethod
    def _template_has_prompt(cls, v: str) -> str:
        if "{prompt}" not in v:
            raise ValueError("must contain the placeholder {prompt}")
        return v


class QuantSection(Section):
    method: Literal["nf4", "int8"] = "nf4"
    """nf4: 4-bit NormalFloat with block-wise absmax scales; int8: int8 with per-row absmax."""
    block_size: int = Field(default=64, ge=2, multiple_of=2)
    """Weights per NF4 block sharing one scale (even; ignored by int8)."""
    double_quant: bool = False
    """NF4: store the block scales as int8 too (about 0.13x instead of 0.14x of float32)."""
    skip: list[str] = Field(default_factory=list)
    """Module names kept in float (besides the output / classifier head, never quantized)."""

    def to_quant_config(self, keep_float: list[str]) -> QuantConfig:
        """``keep_float``: modules that must stay float (the task's trainable head)."""
        skip = list(dict.fromkeys([*self.skip, *keep_float]))
        return QuantConfig(self.method, self.block_size, self.double_quant, skip)


class TrainSection(Section):
    epochs: float | None = Field(default=3, gt=0)
    """Passes over the training data (fractions allowed); max_steps wins when set (then null is fine)."""
    max_steps: int | None = Field(default=None, ge=1)
    """Total optimizer steps; overrides epochs."""
    batch_size: int = Field(default=16, ge=1)
    """Examples per micro-batch."""
    eval_batch_size: int | None = Field(default=None, ge=1)
    """Examples per evaluation batch (default: 2 x batch_size)."""
    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step."""
    lr: float = Field(default=5e-4, gt=0)
    """Peak learning rate."""
    lr_ratio_b: float | None = Field(default=None, gt=0)
    """LoRA+: learning rate of the B matrices = lr x lr_ratio_b (e.g. 16). None: same as A."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay."""
    warmup_ratio: float = Field(default=0.06, ge=0, le=1)
    """Fraction of the steps spent warming the learning rate up linearly from 0."""
    warmup_steps: int | None = Field(default=None, ge=0)
    """Warm-up steps; overrides warmup_ratio."""
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up."""
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    """Clip the global gradient norm to this value (None: no clipping)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast precision; fp16 needs a CUDA device, bf16 works on CPU and recent GPUs."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding, faster on CPU)."""
    eval_every: int | None = Field(default=200, ge=1)
    """Evaluate every N optimizer steps (and at the end). None: only at the end."""
    save_every: int | None = Field(default=200, ge=1)
    """Write a resumable checkpoint every N optimizer steps. None: never."""
    keep_checkpoints: int = Field(default=2, ge=1)
    """How many of the newest checkpoints to keep."""
    log_every: int = Field(default=10, ge=1)
    """Write train loss / lr to metrics.jsonl every N optimizer steps."""
    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop after this many evaluations without improvement of metric_for_best."""
    metric_for_best: str | None = None
    """Metric that picks the best adapter (default: the task's main metric)."""
    greater_is_better: bool | None = None
    """Direction of metric_for_best (default: false for loss/perplexity, true otherwise)."""
    keep_best: bool = True
    """Save the best evaluated adapter as adapter/ (otherwise the final one)."""
    eval_at_start: bool = False
    """Evaluate once before the first step."""
    seed: int = 0
    """Seed of the head initialisation, LoRA initialisation, dropout and data order."""
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """Multi-process runs (torchrun): ddp keeps a full model per device and all-reduces only the
    adapter's gradients; fsdp shards the frozen base too, for models bigger than one device."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where to train; auto picks cuda when available."""
    num_threads: int | None = Field(default=None, ge=1)
    """torch CPU threads (None: torch's default)."""
    matmul_backend: MatmulBackend = MatmulBackend.AUTO
    """GEMM library of the fused LoRA layers on CPU: auto (oneDNN for large float32 products,
    2.2-2.4x MKL's speed on the benchmark machine), torch (torch's own, bit-identical to the base
    layers), onednn (always oneDNN)."""


class EvalSection(Section):
    metrics: list[Literal["bleu", "chrf", "rouge_l", "exact_match"]] | None = None
    """Metrics on generated text (causal_lm, seq2seq): any of bleu, chrf (sacrebleu), rouge_l
    (rouge-score), exact_match. Records sharing a prompt are one prompt whose references are all
    their targets (E2E: every ref of one mr). None: [bleu, chrf] for seq2seq, none for causal_lm
    (generation is slow); train.metric_for_best is computed even when not listed."""
    max_eval_samples: int | None = Field(default=200, ge=1)
    """Distinct prompts generated for at each evaluation (the first N; each prompt once).
    None: all. The loss still covers every validation record (see data.max_eval_samples)."""
    tag_scheme: Literal["IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU"] | None = None
    """token_classification: entity decoding for seqeval. None: conlleval-style lenient decoding
    (IOB1 / IOB2 / IOBES tags); a scheme: seqeval's strict mode for it (needed for BILOU)."""
    max_new_tokens: int = Field(default=64, ge=1)
    """Maximum generated tokens."""
    num_beams: int = Field(default=1, ge=1)
    """Beam search width for generation (1: greedy)."""

    @model_validator(mode="before")
    @classmethod
    def _legacy_generate_samples(cls, data: object) -> object:
        """``generate_samples`` (older configs and saved adapters): 0 turned generation off,
        N > 0 bounded it; it now maps to metrics: [] and max_eval_samples: N."""
        if isinstance(data, dict) and "generate_samples" in data:
            data = dict(data)
            n = data.pop("generate_samples")
            if n == 0:
                data.setdefault("metrics", [])
            elif n is not None:
                data.setdefault("max_eval_samples", n)
        return data


class RunConfig(Section):
    model: str
    """A local HF model dir, a .gguf file, a hub id (downloads), or an alias: minilm-l6, smollm2-135m.
    An existing local path wins (in a config file: relative to the config file's folder first)."""
    task: TaskName
    """classification | token_classification | causal_lm | seq2seq."""
    data: DataSection = Field(default_factory=DataSection)
    """Where the data is and which fields to read."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """The adapter: the library's LoraConfig itself (every field is a key; modules_to_save unset
    means the task's head)."""
    train: TrainSection = Field(default_factory=TrainSection)
    """Optimisation, schedule, evaluation and checkpoint cadence."""
    eval: EvalSection = Field(default_factory=EvalSection)
    """What evaluation computes: generation metrics and their budget, the NER tag scheme."""
    quantize: QuantSection | None = None
    """Store the frozen base Linear weights quantized (QLoRA-style): null, nf4, int8, or a mapping
    {method, block_size, double_quant, skip}. Adapters still load onto the float base."""
    output_dir: str = "runs/run"
    """Where adapter/, checkpoints/, metrics.jsonl, summary.json and plots go (relative to the
    current directory)."""
    resume: Literal["never", "auto"] = "never"
    """auto: continue from the newest complete checkpoint in output_dir when there is one."""
    resume_allow_changes: list[str] = Field(default_factory=list)
    """Keys (e.g. [train.lr]) that may differ from the checkpoint's config on resume; any other
    change that affects training is refused (see lorakit/training/drift.py)."""

    @field_validator("resume", mode="before")
    @classmethod
    def _resume_bool(cls, v: object) -> object:
        return {True: "auto", False: "never"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("resume_allow_changes")
    @classmethod
    def _known_keys(cls, v: list[str]) -> list[str]:
        for key in v:
            if not _is_key(RunConfig, key.split(".")):
                raise ValueError(f"{key!r} is not a config key (write dotted paths such as train.lr)")
        return v

    @field_validator("quantize", mode="before")
    @classmethod
    def _quantize_shorthand(cls, v: object) -> object:
        return {"method": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check_combinations(self) -> RunConfig:
        if self.data.validation and self.data.validation_split:
            raise ValueError("set data.validation or data.validation_split, not both")
        if self.train.max_steps is None and self.train.epochs is None:
            raise ValueError("train.max_steps and train.epochs are both null; set one of them")
        if self.train.precision == "fp16" and self.train.device in ("cpu", "mps"):
            raise ValueError(
                f"train.precision = 'fp16' needs a CUDA device, but train.device = {self.train.device!r}; "
                "use bf16 or fp32"
            )
        if self.task == "causal_lm" and self.data.text_pair_field:
            raise ValueError("data.text_pair_field only applies to task classification")
        return self


def _is_key(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    ann = field.annotation
    return isinstance(ann, type) and issubclass(ann, BaseModel) and _is_key(ann, parts[1:])
