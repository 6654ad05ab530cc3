"""Dynamic batching for `translator serve`: the sentences of concurrent requests translated together.

A request joins a bounded queue (``max_queue`` requests waiting; one more is refused with
`Overloaded`, a 503). Whenever one of the ``batches_in_flight`` slots is free, the batcher
takes the requests at the head of the queue that share the first one's search (beam size,
n-best or not, scores or not), up to ``max_batch_sentences`` sentences, waiting up to ``max_wait_ms`` for more
while the batch is smaller; it sorts their sentences by length and cuts them into one part per
free slot (at a low load a lone request is searched in two halves at once; under load every
part is a full batch), each translated in a worker thread. A request is answered when all its
sentences are.

The slot is taken before the batch is gathered, so requests that arrive while every slot is
busy wait in the queue and make the next batch larger; a batch gathered first and then held
until a slot frees would stay as small as it was (on the demo model, greedy search: a batch of
32 mixed sentences translates at 750 sentences/s, one of 128 at 1,300: one export call after
another, 2026-12-07, 2-core Intel Xeon).

A request whose client went away or whose time ran out has its future cancelled: it is dropped
from the queue, and a part that holds it answers the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


class Overloaded(Exception):
    """The queue is full: the request is refused (503 with Retry-After)."""


@dataclass
class Request:
    sentences: list[str]
    beam_size: int
    n_best: bool
    scores: bool
    future: asyncio.Future

    @property
    def search(self) -> tuple[int, bool, bool]:
        return self.beam_size, self.n_best, self.scores


class Batcher:
    """``await batcher.translate(sentences, beam_size, n_best, scores)`` -> one list of (text, score)
    hypotheses per sentence, best first (see the module docstring). ``translate_part`` is
    ``Backend.translate``; ``observe_batch(sentences)`` is told the size of every part."""

    def __init__(self, translate_part, max_batch_sentences: int, max_wait_ms: float, batches_in_flight: int,
                 max_queue: int, observe_batch=lambda sentences: None):
        self.translate_part, self.observe_batch = translate_part, observe_batch
        self.max_batch_sentences, self.max_wait = max_batch_sentences, max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.pool = ThreadPoolExecutor(max_workers=batches_in_flight)
        self.idle_slots = batches_in_flight
        self.waiting: deque[Request] = deque()
        self.arrived = self.slot_freed = None  # asyncio.Events, made in the loop by `start`
        self.task = None
        self.running = set()  # the parts being translated (asyncio keeps only weak references to tasks)
        self.requests = self.batches = 0  # translated so far (GET /health reports them)

    def start(self) -> None:
        self.arrived, self.slot_freed = asyncio.Event(), asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def queued(self) -> int:
        """Requests waiting for a batch (their clients still there)."""
        return sum(not request.future.done() for request in self.waiting)

    async def translate(self, sentences: list[str], beam_size: int, n_best: bool = False, scores: bool = True):
        if not sentences:
            return []
        if self.queued() >= self.max_queue:
            raise Overloaded(f"the server has {self.max_queue} requests waiting (--max-queue); retry later")
        request = Request(sentences, beam_size, n_best, scores, asyncio.get_running_loop().create_future())
        self.waiting.append(request)
        self.arrived.set()
        return await request.future

    # --------------------------------------------------------------------- the loop

    async def _run(self) -> None:
        while True:
            while self.idle_slots == 0:
                self.slot_freed.clear()
                await self.slot_freed.wait()
            requests = await self._gather()
            self.requests += len(requests)
            group = _Group(requests)
            # Sorted by length, as `Translator` does: a part's search takes as many steps as
            # its longest sentence needs.
            order = sorted(group.places(), key=lambda place: len(group.sentence(place)))
            size = -(-len(order) // min(self.idle_slots, len(order)))  # rounded up
            for start in range(0, len(order), size):
                self.idle_slots -= 1
                self.batches += 1
                self.observe_batch(len(order[start:start + size]))
                task = asyncio.get_running_loop().create_task(
                    self._translate(group, order[start:start + size], requests[0].search))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    def _drop_abandoned(self) -> None:
        self.waiting = deque(request for request in self.waiting if not request.future.done())

    def _fitting(self) -> list[Request]:
        """The waiting requests with the first one's search, in order, within max_batch_sentences
        (the first one always)."""
        chosen, count = [], 0
        for request in self.waiting:
            if request.search == self.waiting[0].search and \
                    (not chosen or count + len(request.sentences) <= self.max_batch_sentences):
                chosen.append(request)
                count += len(request.sentences)
        return chosen

    async def _gather(self) -> list[Request]:
        loop = asyncio.get_running_loop()
        self._drop_abandoned()
        while not self.waiting:
            self.arrived.clear()
            await self.arrived.wait()
            self._drop_abandoned()
        deadline = loop.time() + self.max_wait
        while sum(len(request.sentences) for request in self._fitting()) < self.max_batch_sentences:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), deadline - loop.time())
            except (asyncio.TimeoutError, TimeoutError):
                break
        self._drop_abandoned()
        if not self.waiting:  # every one of them went away while we waited
            return await self._gather()
        chosen = self._fitting()
        taken = set(map(id, chosen))
        self.waiting = deque(request for request in self.waiting if id(request) not in taken)
        return chosen

    async def _translate(self, group: _Group, places: list, search: tuple) -> None:
        try:
            sentences = [group.sentence(place) for place in places]
            try:
                hypotheses = await asyncio.get_running_loop().run_in_executor(
                    self.pool, self.translate_part, sentences, *search)
            except Exception as error:  # the model failed: every request of the group hears why
                group.fail(error)
                return
            group.fill(places, hypotheses)
        finally:
            self.idle_slots += 1
            self.slot_freed.set()


class _Group:
    """The requests of one batch, whose sentences are translated in parts: a request is
    answered when all its sentences are."""

    def __init__(self, requests: list[Request]):
        self.requests = requests
        self.results = [[None] * len(request.sentences) for request in requests]
        self.missing = [len(request.sentences) for request in requests]

    def places(self) -> list[tuple[int, int]]:
        return [(row, column) for row, request in enumerate(self.requests) for column in range(len(request.sentences))]

    def sentence(self, place) -> str:
        return self.requests[place[0]].sentences[place[1]]

    def fill(self, places, hypotheses) -> None:
        for (row, column), sentence_hypotheses in zip(places, hypotheses):
            self.results[row][column] = sentence_hypotheses
            self.missing[row] -= 1
            future = self.requests[row].future
            if self.missing[row] == 0 and not future.done():  # a client that went away cancelled its future
                future.set_result(self.results[row])

    def fail(self, error: Exception) -> None:
        for request in self.requests:
            if not request.future.done():
                request.future.set_exception(error)
