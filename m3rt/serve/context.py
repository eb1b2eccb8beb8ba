"""ServeContext: what every handler reads (app.state.m3rt): the runtime, the settings, the batcher, admission,
metrics, the served model name and prompts, the drain deadline and the engine's health."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from m3rt.runtime.outputs import Outputs
from m3rt.serve.admission import Admission, Budget
from m3rt.serve.batcher import Batcher
from m3rt.serve.config import ServeConfig
from m3rt.serve.errors import Kind, ServeError
from m3rt.serve.metrics import Metrics

# Runtime calls in one batcher part, in the runtime's padded-token batches: what a client that leaves still costs.
PART_BATCHES = 16
# /health: an engine call this recent proves the engine answers; older, a probe call is made (one at a time).
HEALTH_FRESH_S = 5.0
HEALTH_PROBE_TIMEOUT_S = 2.0
# /health: a single runtime call running longer than this is taken for a stuck engine.
HEALTH_STALL_S = 600.0


class ServeContext:
    def __init__(self, runtime, settings: ServeConfig):
        self.runtime, self.settings = runtime, settings
        self.metrics = Metrics()
        part_tokens = PART_BATCHES * runtime.batch_tokens
        self.batcher = Batcher(runtime, max_wait_ms=settings.max_wait_ms, max_batch_texts=settings.max_batch_texts,
                               max_batch_tokens=part_tokens, max_queue_tokens=settings.max_queue_tokens,
                               workers=settings.workers, on_batch=self.metrics.batch)
        self.budget = Budget(settings.max_response_bytes)
        self.admission = Admission(runtime, self.batcher, self.budget, max_texts=settings.max_texts_per_request,
                                   part_tokens=part_tokens, threads=min(4, os.cpu_count() or 1),
                                   metrics=self.metrics, draining=self.past_drain_deadline)
        self.metrics.watch(lambda: self.batcher.queued_tokens, lambda: self.budget.used)
        self.model_name = settings.served_model_name or model_name(runtime.manifest.source)
        self.query_prompt = settings.default_prompt or runtime.config.query_instruction_for_retrieval
        self.prompts = dict(settings.prompts or {})
        if self.query_prompt and "query" not in self.prompts:
            self.prompts["query"] = self.query_prompt
        self.created = int(time.time())
        self.drain_deadline: float | None = None
        self._probe_input = runtime.tokenize(["health"], max_length=8)
        self._probe: asyncio.Future | None = None

    def close(self, timeout: float) -> bool:
        """Stop the workers (queued work finishes first); whether they stopped within `timeout` seconds."""
        self.admission.close()
        return self.batcher.close(timeout)

    # ---------------------------------------------------------------------------------- drain
    def start_drain(self) -> None:
        if self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.settings.graceful_timeout

    @property
    def draining(self) -> bool:
        return self.drain_deadline is not None

    def past_drain_deadline(self) -> bool:
        return self.drain_deadline is not None and time.monotonic() >= self.drain_deadline

    # ---------------------------------------------------------------------------------- prompts
    def prompt(self, name: str | None) -> str:
        """The text of prompt `name` ("" for None); an unknown name is a 422 listing the known ones."""
        if name is None:
            return ""
        if name not in self.prompts:
            known = ", ".join(sorted(self.prompts)) or "none (start the server with --prompts or --default-prompt)"
            raise ServeError(Kind.VALIDATION, f"prompt_name {name!r} is not a prompt of this server; known: {known}",
                             param="prompt_name")
        return self.prompts[name]

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.model_name:
            raise ServeError(Kind.MODEL_NOT_FOUND, f"The model `{model}` does not exist on this server; it serves "
                                                   f"`{self.model_name}` (see /v1/models)", param="model")

    # ---------------------------------------------------------------------------------- health
    async def check_health(self) -> str:
        """'ok' when the engine answered lately or answers a probe now; a 503 ServeError otherwise."""
        if self.draining:
            raise ServeError(Kind.SHUTTING_DOWN, "the server is shutting down")
        state, now = self.batcher.state, time.monotonic()
        if state.running_since is not None:
            if now - state.running_since > HEALTH_STALL_S:
                raise ServeError(Kind.UNHEALTHY, f"one engine call has run for {now - state.running_since:.0f} s")
            return "ok"
        if state.last_error is None and state.last_ok is not None and now - state.last_ok < HEALTH_FRESH_S:
            return "ok"
        if not self.batcher.idle:
            return "ok"  # work is queued and about to run
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._run_probe())
        return await asyncio.shield(self._probe)

    async def _run_probe(self) -> str:
        try:
            futures = self.batcher.submit([self._probe_input], Outputs(dense=True), counted=False)
            await asyncio.wait_for(asyncio.wrap_future(futures[0]), HEALTH_PROBE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ServeError(Kind.UNHEALTHY, f"the engine did not answer within {HEALTH_PROBE_TIMEOUT_S:g} s") from None
        except Exception as e:  # noqa: BLE001 - any failure of the engine is the answer
            raise ServeError(Kind.UNHEALTHY, f"the engine failed: {type(e).__name__}: {e}") from None
        return "ok"


def model_name(source: str) -> str:
    """The artifact's model as a name: a hub id as is, a local directory by its last part (no machine path)."""
    source = str(source or "m3rt")
    if source.startswith(("/", "~", ".")) or "\\" in source or Path(source).is_absolute() or source.count("/") > 1:
        return Path(source).name or "m3rt"
    return source
