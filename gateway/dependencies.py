"""A circuit breaker for the services an analysis needs (Triton, the kinematics service).

While a dependency is known to be down, workers take no job: a job that would fail at its first inference
call stays queued instead, and accepted jobs survive an outage without spending their retry budget. The
gate learns of an outage from a failed call (:meth:`DependencyGate.failed`) or a readiness probe
(:meth:`DependencyGate.update`), and of the recovery from the probes, which the job manager runs every
few seconds, faster while something is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

__all__ = ["DependencyGate"]

log = logging.getLogger("gaitway.dependencies")

# how an error message names each dependency (never its address)
LABELS = {"triton": "the inference server (Triton)", "kinematics": "the kinematics service"}


class DependencyGate:
    """Which remote dependencies are down, and since when. Thread-safe."""

    def __init__(self, names: tuple[str, ...], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.names = names  # the dependencies this gateway uses (e.g. "triton", "kinematics")
        self._clock = clock
        self._down: dict[str, float] = {}
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        """True when every dependency is up (as far as is known): jobs may be taken."""
        with self._lock:
            return not self._down

    def down(self) -> dict[str, float]:
        """Each dependency known to be down -> seconds it has been down."""
        now = self._clock()
        with self._lock:
            return {name: now - since for name, since in self._down.items()}

    def outage_s(self) -> float:
        """How long the longest current outage has lasted (0 when none)."""
        return max(self.down().values(), default=0.0)

    def describe(self) -> str:
        """The dependencies down now, for an error message: "the inference server (Triton) is unreachable"."""
        names = [LABELS.get(name, name) for name in sorted(self.down())]
        if not names:
            return "every dependency is reachable"
        return f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} unreachable"

    def failed(self, name: str) -> None:
        """A call to ``name`` found it unreachable. Only a watched dependency closes the gate: no probe
        would ever reopen it for another."""
        if name not in self.names:
            log.warning("unwatched dependency down", extra={"dependency": name})
            return
        with self._lock:
            if name not in self._down:
                self._down[name] = self._clock()
                log.warning("dependency down; taking no jobs until it is back", extra={"dependency": name})

    def update(self, checks: Mapping[str, str]) -> None:
        """Readiness results (name -> "ok" or why not) of the dependencies this gate watches."""
        with self._lock:
            for name in self.names:
                state = checks.get(name)
                if state is None:
                    continue
                if state == "ok":
                    if self._down.pop(name, None) is not None:
                        log.info("dependency back; taking jobs again", extra={"dependency": name})
                elif name not in self._down:
                    self._down[name] = self._clock()
                    log.warning(
                        "dependency down; taking no jobs until it is back", extra={"dependency": name}
                    )
