"""Dynamic batching: images of concurrent requests share forward passes.

Requests put their images on a queue and wait. One task takes the first waiting request, then
keeps collecting until `max_batch` images are gathered or `max_wait_ms` has passed, and hands the
whole batch to the model in a worker thread (never on the event loop). While the model is busy,
the next batch fills up, so under load the backbone sees batches as large as a batch command
would give it, and a lone request waits at most `max_wait_ms` for company.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import ConfigError
from ..features import ImageInput
from ..model import Attribution, Attributor


class Batcher:
    def __init__(
        self,
        model: Attributor,
        max_batch: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
    ):
        if max_batch < 1 or max_wait_ms < 0:
            raise ConfigError("max_batch must be ≥ 1 and max_wait_ms ≥ 0")
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.queue: asyncio.Queue | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def attribute(self, images: Sequence[tuple[str, bytes]]) -> list[Attribution]:
        """Attributions of `(name, encoded bytes)` pairs, in order."""
        assert self.queue is not None, "the batcher is not started"
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put(([ImageInput(name, data) for name, data in images], fut))
        return await fut

    async def call(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on the model's thread, between batches (a whole-request job such as
        discovery, which must not run beside a batch on the same model)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            n = len(batch[0][0])
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                batch.append(nxt)
                n += len(nxt[0])
            inputs = [inp for items, _ in batch for inp in items]
            if self.on_batch is not None:
                self.on_batch(len(inputs))
            try:
                results = await loop.run_in_executor(self.executor, self.model.predict, inputs)
            except Exception as exc:  # noqa: BLE001 - every waiting request learns why
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for items, fut in batch:
                if not fut.done():
                    fut.set_result(results[start : start + len(items)])
                start += len(items)
