"""Adapter files: ``adapter_config.json`` + ``adapter_model.safetensors``, PEFT-compatible."""

from lorakit.adapter_io.load import load_adapter
from lorakit.adapter_io.save import AdapterPayload, adapter_payload, save_adapter, write_adapter

__all__ = ["AdapterPayload", "adapter_payload", "load_adapter", "save_adapter", "write_adapter"]
