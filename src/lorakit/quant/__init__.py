"""Quantized frozen base weights (QLoRA-style), pure PyTorch, CPU and GPU.

This package holds only the storage formats and ``QuantLinear`` (the layers import it, so it
imports no layer); the whole-model functions live in ``lorakit.quantized_model`` and are
exported from ``lorakit``. Typical use::

    lorakit.quantize_model(model, QuantConfig(method="nf4", double_quant=True))  # or just "nf4"
    lorakit.inject(model, LoraConfig(targets=["q_proj", "v_proj"]))  # A/B stay float32

The run config carries this as its ``quantize:`` section (shorthand ``quantize: nf4``); the
trainer calls ``quantize_model`` right after loading the base model and before ``inject``.
Merging into a quantized base goes through ``merge_and_unload_quantized(model, requantize=...)``.
"""

from lorakit.quant.config import QuantConfig, QuantMethod
from lorakit.quant.int8 import Int8Storage
from lorakit.quant.linear import QuantLinear, is_quantized
from lorakit.quant.nf4 import NF4_CODEBOOK, NF4Storage

__all__ = [
    "NF4_CODEBOOK",
    "Int8Storage",
    "NF4Storage",
    "QuantConfig",
    "QuantLinear",
    "QuantMethod",
    "is_quantized",
]
