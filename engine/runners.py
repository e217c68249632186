"""Two ways to drive vLLM, both exposing `generate(prompt, params)` as an async stream.

`InProcessRunner` wraps the synchronous `LLMEngine` with multiprocessing off and steps
it from one thread of ours: on a 2-core CPU this keeps both cores for the model (AsyncLLM
always moves its engine core into a child process and reserves a core for the front end),
and measured faster here. `AsyncLLMRunner` is vLLM's `AsyncLLM`, the right choice on a GPU.
Both batch every request in flight together: there is no lock around decoding.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import threading
import time
from typing import Any, AsyncIterator, Protocol

log = logging.getLogger(__name__)

_DONE = object()


class Runner(Protocol):
    def generate(self, prompt: dict[str, Any], params: Any, priority: int = 0) -> AsyncIterator[Any]: ...

    def shutdown(self) -> None: ...


class _OutputStream:
    """Carries one request's outputs from the engine thread to the caller's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def push(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the caller's loop is closed: nobody is listening any more
            pass

    async def items(self) -> AsyncIterator[Any]:
        while True:
            item = await self.queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class InProcessRunner:
    """Steps a synchronous vLLM `LLMEngine` from one background thread."""

    def __init__(self, engine_args: Any) -> None:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm.v1.engine.llm_engine import LLMEngine

        self._engine = LLMEngine.from_engine_args(engine_args, enable_multiprocessing=False)
        # In-process, vLLM's CPU worker replaces torch.set_num_threads with a warning that
        # its audio preprocessing then triggers on every request: keep the log readable.
        logging.getLogger("vllm.v1.worker.cpu_worker").setLevel(logging.ERROR)
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._streams: dict[str, _OutputStream] = {}
        self._wake = threading.Event()
        self._stopped = False
        self._ids = itertools.count()
        #: Seconds spent in vLLM so far (taking requests in, stepping). Its share of a
        #: wall-clock interval is how full the engine is: on a CPU a step's Python parts
        #: run on one core, so process CPU use alone reads low while the engine is full.
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._loop, name="vllm-engine", daemon=True)
        self._thread.start()

    async def generate(self, prompt: dict[str, Any], params: Any, priority: int = 0) -> AsyncIterator[Any]:
        if self._stopped:
            raise RuntimeError("engine is shut down")
        request_id = f"r{next(self._ids)}"
        stream = _OutputStream(asyncio.get_running_loop())
        self._send("add", (request_id, prompt, params, priority, stream))
        finished = False
        try:
            async for output in stream.items():
                yield output
                finished = finished or output.finished
        finally:
            if not finished:
                self._send("abort", request_id)

    def _send(self, kind: str, payload: Any) -> None:
        self._inbox.put((kind, payload))
        self._wake.set()

    def _drain_inbox(self) -> None:
        while True:
            try:
                kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                request_id, prompt, params, priority, stream = payload
                try:
                    self._engine.add_request(request_id, prompt, params, priority=priority)
                    self._streams[request_id] = stream
                except Exception as exc:  # bad prompt: tell that caller only
                    stream.push(exc)
            elif kind == "abort":
                if self._streams.pop(payload, None) is not None:
                    self._engine.abort_request([payload])

    def _loop(self) -> None:
        while not self._stopped:
            started = time.perf_counter()
            self._drain_inbox()  # vLLM's input processing (mel features) runs here
            self.busy_s += time.perf_counter() - started
            if not self._streams:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            started = time.perf_counter()
            try:
                outputs = self._engine.step()
            except Exception as exc:
                log.exception("vLLM step failed; failing the %d requests in flight", len(self._streams))
                for stream in self._streams.values():
                    stream.push(RuntimeError(f"engine step failed: {exc}"))
                self._engine.abort_request(list(self._streams))
                self._streams.clear()
                continue
            finally:
                self.busy_s += time.perf_counter() - started
            for output in outputs:
                stream = self._streams.get(output.request_id)
                if stream is None:
                    continue
                stream.push(output)
                if output.finished:
                    stream.push(_DONE)
                    del self._streams[output.request_id]

    def shutdown(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=10)
        for stream in self._streams.values():
            stream.push(RuntimeError("engine shut down"))
        self._streams.clear()


class AsyncLLMRunner:
    """vLLM's `AsyncLLM` on an event loop of its own, usable from any other loop."""

    def __init__(self, engine_args: Any) -> None:
        from vllm.v1.engine.async_llm import AsyncLLM

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-asyncllm", daemon=True)
        self._thread.start()
        self._ids = itertools.count()
        self._llm = asyncio.run_coroutine_threadsafe(self._make(AsyncLLM, engine_args), self._loop).result()

    @staticmethod
    async def _make(cls: Any, engine_args: Any) -> Any:
        return cls.from_engine_args(engine_args)

    async def generate(self, prompt: dict[str, Any], params: Any, priority: int = 0) -> AsyncIterator[Any]:
        request_id = f"a{next(self._ids)}"
        stream = _OutputStream(asyncio.get_running_loop())

        async def pump() -> None:
            try:
                async for output in self._llm.generate(prompt, params, request_id, priority=priority):
                    stream.push(output)
            except Exception as exc:
                stream.push(exc)
            finally:
                stream.push(_DONE)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            async for output in stream.items():
                yield output
        finally:
            future.cancel()  # aborts the request inside AsyncLLM if it is still running

    def shutdown(self) -> None:
        self._llm.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
