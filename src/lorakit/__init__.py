"""lorakit: LoRA fine-tuning for PyTorch and Hugging Face transformers."""

from lorakit.adapter_io import load_adapter, save_adapter
from lorakit.arithmetic import CombineMethod, CombineReport, add_weighted_adapter
from lorakit.config import LoraConfig
from lorakit.errors import AdapterFileError, ConfigError, LorakitError, MergeError, TargetError
from lorakit.fast_modules import (
    prepare_for_serving,
    unwrap_frozen_layers,
    unwrap_gated_mlps,
    wrap_frozen_layers,
    wrap_gated_mlps,
)
from lorakit.inference import Completion, ContinuousBatcher, GenerationRequest, SamplingParams, generate
from lorakit.layers.gemm import MatmulBackend, get_matmul_backend, matmul_backend, set_matmul_backend
from lorakit.merging import merge, merge_and_unload, unload, unmerge
from lorakit.mixed import MixedBatch, mixed_adapters
from lorakit.model import add_adapter, delete_adapter, disable_adapters, inject, set_adapter
from lorakit.quant import QuantConfig, QuantMethod
from lorakit.quantized_model.merge import QuantMergeReport, merge_and_unload_quantized
from lorakit.quantized_model.quantize import QuantReport, quantize_model
from lorakit.summary import trainable_summary
from lorakit.targeting import find_targets

__version__ = "0.1.0"

__all__ = [
    "AdapterFileError",
    "CombineMethod",
    "CombineReport",
    "Completion",
    "ConfigError",
    "ContinuousBatcher",
    "GenerationRequest",
    "LoraConfig",
    "LorakitError",
    "MatmulBackend",
    "MergeError",
    "MixedBatch",
    "QuantConfig",
    "QuantMergeReport",
    "QuantMethod",
    "QuantReport",
    "SamplingParams",
    "TargetError",
    "add_adapter",
    "add_weighted_adapter",
    "delete_adapter",
    "disable_adapters",
    "find_targets",
    "generate",
    "get_matmul_backend",
    "inject",
    "load_adapter",
    "matmul_backend",
    "merge",
    "merge_and_unload",
    "merge_and_unload_quantized",
    "mixed_adapters",
    "prepare_for_serving",
    "quantize_model",
    "save_adapter",
    "set_adapter",
    "set_matmul_backend",
    "trainable_summary",
    "unload",
    "unmerge",
    "unwrap_frozen_layers",
    "unwrap_gated_mlps",
    "wrap_frozen_layers",
    "wrap_gated_mlps",
]
