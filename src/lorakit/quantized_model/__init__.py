"""Whole-model operations on a quantized base (QLoRA-style), above the layers and ``lorakit.model``.

``quantize.quantize_model`` swaps a model's Linear weights for ``lorakit.quant.QuantLinear``;
``merge.merge_and_unload_quantized`` folds adapters into it; ``roundtrip.requantize_in_place``
snaps a merged float model to the quantization grid. The storage formats themselves live in the
lower package ``lorakit.quant``, which the LoRA layers import.
"""
