"""Inference with many adapters at once: mixed-adapter generation with continuous batching."""

from lorakit.inference.api import Completion, generate
from lorakit.inference.batcher import ContinuousBatcher, GenerationRequest, TokenEvent
from lorakit.inference.sampling import SamplingParams

__all__ = ["Completion", "ContinuousBatcher", "GenerationRequest", "SamplingParams", "TokenEvent", "generate"]
