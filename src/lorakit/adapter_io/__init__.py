"""Adapter files: ``adapter_config.json`` + ``adapter_model.safetensors``, PEFT-compatible."""

from lorakit.adapter_io.load import load_adapter
from lorakit.adapter_io.save import save_adapter

__all__ = ["load_adapter", "save_adapter"]
