"""Prometheus metrics of one server (its own registry, so several servers can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lorakit_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.adapter_requests = Counter(
            "lorakit_adapter_requests", "Requests per model (adapter or base)", ["model"], registry=r
        )
        self.prompt_tokens = Counter("lorakit_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generated_tokens = Counter("lorakit_generated_tokens", "Tokens generated", registry=r)
        self.queue_depth = Gauge("lorakit_queue_depth", "Requests waiting for a batch slot", registry=r)
        self.running = Gauge("lorakit_running_requests", "Requests in the running batch", registry=r)
        self.batch_size = Histogram(
            "lorakit_batch_size", "Rows per decode step", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.loaded_adapters = Gauge("lorakit_loaded_adapters", "Adapters in memory", registry=r)
        self.adapter_loads = Counter("lorakit_adapter_loads", "Adapter loads from disk", registry=r)
        self.adapter_evictions = Counter("lorakit_adapter_evictions", "Adapters evicted (LRU)", registry=r)
        self.adapter_load_seconds = Histogram(
            "lorakit_adapter_load_seconds", "Time to load one adapter", buckets=LATENCY_BUCKETS, registry=r
        )
        self.latency = Histogram(
            "lorakit_request_latency_seconds",
            "Request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "lorakit_time_to_first_token_seconds", "Time to first token", buckets=LATENCY_BUCKETS, registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
