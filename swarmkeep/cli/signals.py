"""Stop signals for the commands that start services: SIGINT, SIGTERM and SIGHUP all mean "stop cleanly"."""

from __future__ import annotations

import signal
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived; a KeyboardInterrupt, so the code that handles Ctrl-C handles it too."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """While inside, the first stop signal raises StopRequested in the main thread; later ones, and any that
    arrive once `cleaning_up()` is called, are only noted, so they cannot cut the stop of the children short.

    Installed explicitly for all three: Python turns only SIGINT into KeyboardInterrupt, a shell leaves SIGINT
    ignored for a background job, and SIGTERM or SIGHUP would otherwise end the process without its cleanup.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._raise = True
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._raise:
            self._raise = False
            raise StopRequested(signum)

    def cleaning_up(self) -> None:
        """From now on a stop signal no longer raises."""
        self._raise = False

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
