"""SIGINT and SIGTERM as requests to stop at the next step boundary, with a checkpoint.

Ctrl-C sends SIGINT; SLURM, Kubernetes and TPU preemption send SIGTERM. Inside the training
loop (:func:`stop_requests`) either signal only sets a flag: the loop finishes the step it is in,
saves a checkpoint of it and raises :class:`Interrupted`, which the command line turns into one
line saying how to resume and exit status 128 + the signal number (130 for SIGINT, 143 for
SIGTERM). A second signal while the first is being handled stops at once. Outside the loop
(loading data, compiling, evaluating) :func:`terminate_as_interrupt` makes SIGTERM raise
:class:`Terminated`, a ``KeyboardInterrupt``, as SIGINT does, so both end in the same one line.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM received outside the training loop."""


class Interrupted(Exception):
    """Training stopped by a signal after its state at ``step`` was checkpointed."""

    def __init__(self, signum: int, step: int, directory: str | Path):
        self.signum, self.step, self.directory = signum, step, Path(directory)
        super().__init__(
            f"interrupted by {signal.Signals(signum).name} at step {step}: checkpoint saved in "
            f"{self.directory}; run the same command again to resume from it"
        )

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_requests(multiprocess: bool = False) -> Iterator[list[int]]:
    """While open, SIGINT and SIGTERM append their number to the yielded list instead of
    stopping the process; a second signal raises ``KeyboardInterrupt`` at once.

    With ``multiprocess``, SIGTERM is left to JAX's preemption service (which makes every
    process of the run stop at the same step) and SIGINT is passed on to it as a SIGTERM, so
    Ctrl-C on one host stops them all at one step too.
    """
    received: list[int] = []
    if not _on_main_thread():  # signal handlers can only be set on the main thread
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        if multiprocess:
            signal.raise_signal(signal.SIGTERM)

    signals = (signal.SIGINT,) if multiprocess else STOP_SIGNALS
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise :class:`Terminated` (as SIGINT raises ``KeyboardInterrupt``)."""
    if not _on_main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, handler)
