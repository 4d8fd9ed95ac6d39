"""The engine thread: owns the model, admits requests into the running batch, steps it.

The HTTP side (asyncio) never touches the model. It submits jobs, which the engine thread picks
up between decode steps: generation jobs join the continuous batch once their adapter is
resident (loaded on demand, pinned while they run), classification jobs run as mixed batches
between decode steps, and adapter loads/unloads run there too. Results go back through each
job's ``sink`` (called on the engine thread; the API turns it into asyncio events).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from lorakit.errors import LorakitError
from lorakit.inference.batcher import ContinuousBatcher, GenerationRequest, TokenEvent
from lorakit.inference.sampling import SamplingParams
from lorakit.serving.backend import Backend
from lorakit.serving.encoders import entity_results, label_results, run_heads
from lorakit.serving.metrics import ServerMetrics
from lorakit.serving.store import AdapterStore, StoreFull


class QueueFull(LorakitError):
    """More requests are waiting than --max-queue allows."""


@dataclass
class GenJob:
    id: str
    adapter: str | None
    prompt_ids: list[int]
    params: SamplingParams
    sink: Callable[[TokenEvent | Exception], None]
    model: str
    submitted: float = field(default_factory=time.perf_counter)
    first_token: float | None = None


@dataclass
class ClassifyJob:
    adapter: str
    texts: list[str]
    future: Future


class Engine:
    def __init__(
        self,
        backend: Backend,
        store: AdapterStore,
        max_batch: int,
        max_queue: int,
        metrics: ServerMetrics,
        strategy: str = "gather",
        on_idle: Callable[[], Any] | None = None,
    ) -> None:
        self.backend, self.store, self.metrics = backend, store, metrics
        self.on_idle = on_idle
        """Called on the engine thread each time the work runs out (the server hands freed heap
        pages back to the OS there: a busy spell's peak would otherwise stay resident)."""
        self.max_batch, self.max_queue = max_batch, max_queue
        self.batcher = (
            ContinuousBatcher(backend.lm, backend.tokenizer, max_batch=max_batch, strategy=strategy)
            if backend.lm is not None
            else None
        )
        self.pending: deque[GenJob] = deque()
        self.running: dict[str, GenJob] = {}
        self.classify_jobs: list[ClassifyJob] = []
        self.calls: deque[tuple[Callable[[], Any], Future]] = deque()
        self._cancel: set[str] = set()
        self._leaving: set[str] = set()  # cancelled running jobs: they leave the batch at the next step
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="lorakit-engine", daemon=True)

    # -- called from any thread ----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def submit(self, job: GenJob) -> None:
        if self.batcher is None:
            raise LorakitError(f"the base model {self.backend.id!r} is an encoder: use /v1/classify")
        self.batcher.check(GenerationRequest(job.id, job.prompt_ids, None, job.params))  # context, empty
        with self._wake:
            if len(self.pending) >= self.max_queue:
                raise QueueFull(f"{len(self.pending)} requests are waiting (--max-queue {self.max_queue})")
            self.pending.append(job)
            self.metrics.queue_depth.set(len(self.pending))
            self._wake.notify()

    def cancel(self, job_id: str) -> None:
        with self._wake:
            self._cancel.add(job_id)
            self._wake.notify()

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the engine thread between steps; its result or exception in the future."""
        future: Future = Future()
        with self._wake:
            self.calls.append((fn, future))
            self._wake.notify()
        return future

    def classify(self, adapter: str, texts: list[str]) -> Future:
        future: Future = Future()
        with self._wake:
            if len(self.classify_jobs) >= self.max_queue:
                raise QueueFull(f"{len(self.classify_jobs)} classification requests are waiting")
            self.classify_jobs.append(ClassifyJob(adapter, texts, future))
            self._wake.notify()
        return future

    @property
    def load(self) -> int:
        return len(self.pending) + len(self.running)

    # -- the engine thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        busy = False  # whether the last pass had work: on_idle runs once per busy spell
        while True:
            if busy and self.on_idle is not None:
                with self._wake:
                    busy = not self._idle()
                if not busy:
                    self.on_idle()  # outside the lock: submitters (the event loop) never wait on it
            with self._wake:
                if self._idle() and not self._stop:
                    self._wake.wait(timeout=0.5)
                if self._stop:
                    break
                busy = not self._idle()
                calls, self.calls = list(self.calls), deque()
                jobs, self.classify_jobs = self.classify_jobs, []
                cancel, self._cancel = self._cancel, set()
            for fn, future in calls:
                self._run_call(fn, future)
            self._apply_cancels(cancel)
            if jobs:
                self._classify(jobs)
            self._step()
            self._admit()
        self._fail_all(LorakitError("the server is shutting down"))

    def _idle(self) -> bool:
        return not (self.calls or self.classify_jobs or self._cancel or self.pending or self.running)

    def _run_call(self, fn: Callable[[], Any], future: Future) -> None:
        try:
            future.set_result(fn())
        except Exception as e:  # handed to the caller, which maps it to an HTTP error
            future.set_exception(e)

    def _apply_cancels(self, cancel: set[str]) -> None:
        if not cancel:
            return
        self.pending = deque(j for j in self.pending if j.id not in cancel)
        for job_id in cancel & set(self.running):
            self.batcher.cancel(job_id)
            self._leaving.add(job_id)
        self.metrics.queue_depth.set(len(self.pending))

    def _step(self) -> None:
        if self.batcher is None or not self.batcher.has_work:
            return
        self.metrics.batch_size.observe(self.batcher.running or len(self.batcher.waiting))
        events = self.batcher.step()
        for job_id in self._leaving:  # they left the batch at the start of this step
            self._finish(job_id)
        self._leaving.clear()
        now = time.perf_counter()
        for e in events:
            job = self.running.get(e.id)
            if job is None:
                continue
            if job.first_token is None:
                job.first_token = now
                self.metrics.ttft.observe(now - job.submitted)
            self.metrics.generated_tokens.inc()
            job.sink(e)
            if e.finish_reason is not None:
                self._finish(e.id)
        self.metrics.running.set(len(self.running))

    def _finish(self, job_id: str) -> None:
        job = self.running.pop(job_id, None)
        if job is not None and job.adapter is not None:
            self.store.release(job.adapter)

    def _admit(self) -> None:
        if self.batcher is None:
            return
        skipped: deque[GenJob] = deque()
        while self.pending and len(self.running) < self.max_batch:
            job = self.pending.popleft()
            try:
                if job.adapter is not None:
                    self.store.acquire(job.adapter)
            except StoreFull:
                skipped.append(job)  # waits until a loaded adapter is free to evict
                continue
            except Exception as e:
                job.sink(e)
                continue
            try:
                self.batcher.submit(GenerationRequest(job.id, job.prompt_ids, job.adapter, job.params))
            except Exception as e:
                if job.adapter is not None:
                    self.store.release(job.adapter)
                job.sink(e)
                continue
            self.running[job.id] = job
            self.metrics.prompt_tokens.inc(len(job.prompt_ids))
        self.pending = skipped + self.pending
        self.metrics.queue_depth.set(len(self.pending))
        self.metrics.loaded_adapters.set(len(self.store.loaded))

    def _classify(self, jobs: list[ClassifyJob]) -> None:
        """Every waiting classification job, grouped by head shape, in mixed batches of <= 64 texts."""
        groups: dict[tuple, list[tuple[ClassifyJob, Any]]] = {}
        for job in jobs:
            try:
                info = self.store.acquire(job.adapter)
            except Exception as e:
                job.future.set_exception(e)
                continue
            groups.setdefault((info.task, len(info.labels or [])), []).append((job, info))
        for (task, _), members in groups.items():
            rows = [(j, info, t) for j, info in members for t in j.texts]
            results: list[dict] = []
            tokens: list[int] = []
            try:
                model = self.backend.model_for(members[0][1])
                for start in range(0, len(rows), 64):
                    chunk = rows[start : start + 64]
                    texts = [t for _, _, t in chunk]
                    logits, enc = run_heads(
                        model,
                        self.backend.tokenizer,
                        texts,
                        [i.name for _, i, _ in chunk],
                        task != "classification",
                    )
                    labels = [i.labels for _, i, _ in chunk]
                    if task == "classification":
                        results += label_results(logits, labels)
                    else:
                        results += entity_results(logits, enc, texts, labels)
                    tokens += enc["attention_mask"].sum(-1).tolist()
            except Exception as e:
                for job, _ in members:
                    job.future.set_exception(e)
            else:
                at = 0
                self.metrics.prompt_tokens.inc(sum(tokens))
                for job, _ in members:
                    n = len(job.texts)
                    job.future.set_result((task, results[at : at + n], sum(tokens[at : at + n])))
                    at += n
            finally:
                for _, info in members:
                    self.store.release(info.name)

    def _fail_all(self, error: Exception) -> None:
        for job in list(self.pending) + list(self.running.values()):
            job.sink(error)
        for job in self.classify_jobs:
            job.future.set_exception(error)
        for _, future in self.calls:
            future.set_exception(error)
