"""How many LLM calls one worker process has in flight to one endpoint: a limit that backs off on 429 (AIMD).

Every job's sub-agents and orchestrator calls in the process share one limiter per endpoint (base URL), so a
model is never sent more calls at once than it serves well; the rest wait their turn, first come first served.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable
from enum import Enum

from swarmkeep.store.engine import LoopLocal, loop_local

# What a call's progress hook hears (client.py): it queues for a slot here, or the endpoint is answering.
WAITING_FOR_MODEL = "waiting_for_model"
STREAMING = "streaming"

# Halve the limit on a 429; win one slot back per call that succeeds, up to the configured ceiling.
BACKOFF = 0.5
RECOVERY = 1.0


class Outcome(Enum):
    """How a call that held a slot ended, as far as the endpoint's capacity is concerned."""

    SERVED = "served"  # the endpoint answered: the limit may grow
    RATE_LIMITED = "rate_limited"  # a 429: the limit shrinks
    FAILED = "failed"  # anything else says nothing about capacity


class Slot:
    """One call's place at the endpoint; `release` it exactly once, saying how the call ended."""

    def __init__(self, limiter: AIMDLimiter, epoch: int, waited: bool):
        self._limiter = limiter
        self._epoch = epoch
        self.waited = waited  # the call had to queue for this slot
        self._released = False

    def release(self, outcome: Outcome) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(outcome, self._epoch)


class AIMDLimiter:
    """A concurrency limit between 1 and `ceiling`: multiplicative decrease on 429, additive increase on success.

    Calls that were already in flight when the limit last shrank do not shrink it again with their own 429s: a
    burst of rejections is one signal, not a collapse to a single slot."""

    def __init__(self, ceiling: int, *, backoff: float = BACKOFF, recovery: float = RECOVERY):
        self.ceiling = max(int(ceiling), 1)
        self.limit = float(self.ceiling)
        self.backoff = backoff
        self.recovery = recovery
        self.in_flight = 0
        self._epoch = 0  # bumped on each decrease
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Calls queued for a slot."""
        return sum(1 for future in self._waiters if not future.done())

    def set_ceiling(self, ceiling: int) -> None:
        """Another configured limit for this endpoint (a restarted worker's settings, a test): start over at it."""
        ceiling = max(int(ceiling), 1)
        if ceiling != self.ceiling:
            self.ceiling, self.limit = ceiling, float(ceiling)
            self._wake()

    async def acquire(self, on_wait: Callable[[], None] | None = None) -> Slot:
        """A slot, at once when one is free; otherwise `on_wait()` is called and the call queues for one."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return Slot(self, self._epoch, waited=False)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._wake()  # the queue may hold only waiters that were cancelled meanwhile
        if future.done():
            return Slot(self, self._epoch, waited=False)
        if on_wait is not None:
            on_wait()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted just as it was cancelled: hand it on
                self.in_flight -= 1
            elif future in self._waiters:
                self._waiters.remove(future)
            self._wake()
            raise
        return Slot(self, self._epoch, waited=True)

    def _release(self, outcome: Outcome, epoch: int) -> None:
        self.in_flight -= 1
        if outcome is Outcome.RATE_LIMITED:
            if epoch == self._epoch:
                self.limit = max(self.limit * self.backoff, 1.0)
                self._epoch += 1
        elif outcome is Outcome.SERVED:
            self.limit = min(self.limit + self.recovery, float(self.ceiling))
        self._wake()

    def _wake(self) -> None:
        # A granted waiter already counts as in flight, so a slot freed meanwhile cannot be handed out twice.
        while self._waiters and self.in_flight < int(self.limit):
            future = self._waiters.popleft()
            if not future.done():  # not one whose caller was cancelled and has yet to take itself off
                self.in_flight += 1
                future.set_result(None)


_limiters: LoopLocal[str, AIMDLimiter] = weakref.WeakKeyDictionary()


def limiter_for(base_url: str, ceiling: int) -> AIMDLimiter:
    """This process's limiter for the endpoint at `base_url` (made on first use, one per event loop)."""
    limiter = loop_local(_limiters, base_url.rstrip("/"), lambda: AIMDLimiter(ceiling))
    limiter.set_ceiling(ceiling)
    return limiter
