"""``lorakit serve``: one base model, many adapters mixed in every batch, OpenAI-compatible HTTP.

Layers: config (settings) -> backend (the model, loading adapters) -> store (registry, LRU) ->
engine (the thread that batches and steps) -> api/routes (FastAPI) -> server (uvicorn, SIGTERM).
Nothing below this package imports it. Needs the ``serve`` extra: pip install 'lorakit[serve]'.
"""
