"""Dynamic batching: concurrent requests wait a few milliseconds to share one forward pass.

One asyncio task takes the first waiting job, then keeps taking jobs until it has `max_batch_size`
or `max_wait` seconds have passed, and runs the batch on a single inference thread so the event
loop never blocks. The queue is bounded: a full queue is refused at once rather than served late.

(Waiting only while admitted requests are still being received was tried and dropped: with clients
that send again as soon as they are answered, the next requests arrive a few milliseconds apart,
after the first has been admitted alone, and batches shrank from 5-7 to 2-4.)
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, Generic, List, Optional, Sequence, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# run(group, items) -> one result per item, in order; `group` keeps apart jobs that cannot share a pass.
BatchFunction = Callable[[str, Sequence[Item]], Sequence[Result]]


class QueueFull(Exception):
    """The batcher already holds `max_queue` waiting jobs."""


class Closed(Exception):
    """The batcher is stopped (server shutting down)."""


@dataclass
class Job(Generic[Item]):
    item: Item
    group: str
    future: asyncio.Future
    abandoned: bool = False  # the caller stopped waiting (timeout, disconnect): skip it


class DynamicBatcher(Generic[Item, Result]):
    def __init__(self, run: BatchFunction, max_batch_size: int = 8, max_wait: float = 0.01, max_queue: int = 64,
                 on_batch: Optional[Callable[[int], None]] = None):
        if max_batch_size < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch_size and max_queue must be at least 1 and max_wait not negative")
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait  # seconds
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None
        self._executor: Optional[ThreadPoolExecutor] = None

    @property
    def depth(self) -> int:
        """Jobs waiting for a forward pass (not counting the batch being run)."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def full(self) -> bool:
        return self._queue is not None and self._queue.full()

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task = asyncio.create_task(self._loop(), name="dynamic-batcher")

    async def stop(self) -> None:
        """Refuse the jobs still waiting (and the batch in flight, if any: uvicorn lets requests finish
        before it shuts the app down) and wait for the inference thread to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            self._settle(self._queue.get_nowait(), error=Closed("the server is shutting down"))
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, True)

    async def submit(self, item: Item, group: str = "", timeout: Optional[float] = None) -> Result:
        """Queue `item` and wait for its result; QueueFull at once when the queue is full,
        asyncio.TimeoutError after `timeout` seconds (the job is then skipped if not yet started)."""
        if not self.running or self._queue is None:
            raise Closed("the server is not running")
        job = Job(item, group, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull(f"{self.max_queue} requests are already waiting") from None
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except BaseException:  # timeout, or the request was cancelled (client gone, shutdown)
            job.abandoned = True
            raise

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [job for job in batch if not job.abandoned and not job.future.done()]
            if live:
                await self._run_batch(live)

    async def _run_batch(self, batch: List[Job]) -> None:
        groups: Dict[str, List[Job]] = {}
        for job in batch:
            groups.setdefault(job.group, []).append(job)
        try:
            for group, jobs in groups.items():
                if self.on_batch is not None:
                    self.on_batch(len(jobs))
                try:
                    await self._run_group(group, jobs)
                except Exception as error:
                    if len(jobs) == 1:
                        self._settle(jobs[0], error=error)
                        continue
                    # One bad input must not fail its neighbours: run them one at a time.
                    logger.warning("a batch of %d failed (%s); running its requests one at a time", len(jobs), error)
                    for job in jobs:
                        try:
                            await self._run_group(group, [job])
                        except Exception as single_error:
                            self._settle(job, error=single_error)
        except asyncio.CancelledError:
            for job in batch:
                self._settle(job, error=Closed("the server is shutting down"))
            raise

    async def _run_group(self, group: str, jobs: List[Job]) -> None:
        results = await asyncio.get_running_loop().run_in_executor(self._executor, self.run, group,
                                                                   [job.item for job in jobs])
        if len(results) != len(jobs):
            raise RuntimeError(f"the batch function returned {len(results)} results for {len(jobs)} inputs")
        for job, result in zip(jobs, results):
            self._settle(job, result=result)

    @staticmethod
    def _settle(job: Job, result=None, error: Optional[BaseException] = None) -> None:
        if job.future.done():
            return
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)
            if job.abandoned:
                job.future.exception()  # nobody waits for it: mark it retrieved
