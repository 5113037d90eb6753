"""Reading wrk's report.

``wrk -t1 -c50 -d5s URL`` prints, among other lines::

      106573 requests in 5.00s, 11.08MB read
      Socket errors: connect 0, read 2, write 0, timeout 0
      Non-2xx or 3xx responses: 10
    Requests/sec:  21306.38

(the two middle lines only when there were errors). :func:`parse` turns
that into a :class:`WrkResult`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["WrkResult", "parse", "parse_seconds"]

_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", re.M)
_RATE = re.compile(r"^Requests/sec:\s*([\d.]+)\s*$", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_LATENCY = re.compile(r"^\s*Latency\s+(\S+)", re.M)

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_seconds(value: str, unit: str) -> float:
    """``("5.00", "s")`` -> 5.0; wrk prints durations with a unit."""
    return float(value) * _UNITS[unit]


@dataclass
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    requests_per_sec: float
    #: Socket errors by kind: connect, read, write, timeout.
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0
    #: The average latency as wrk prints it, e.g. ``"2.01ms"``.
    latency_avg: str = ""

    @property
    def errors(self) -> str:
        """A description of what went wrong, or ``""`` if nothing did."""
        out = [f"{n} {kind} errors" for kind, n in self.socket_errors.items() if n]
        if self.non_2xx:
            out.append(f"{self.non_2xx} non-2xx/3xx responses")
        if self.requests == 0:
            out.append("no request completed")
        return ", ".join(out)


def parse(output: str) -> WrkResult:
    """Parse wrk's standard output; ValueError if it is not a wrk report."""
    requests = _REQUESTS.search(output)
    rate = _RATE.search(output)
    if requests is None or rate is None:
        tail = output.strip().splitlines()[-3:] or ["(no output)"]
        raise ValueError(f"not a wrk report (no request count or Requests/sec): {tail}")
    result = WrkResult(
        requests=int(requests.group(1)),
        seconds=parse_seconds(requests.group(2), requests.group(3)),
        requests_per_sec=float(rate.group(1)),
    )
    errors = _SOCKET_ERRORS.search(output)
    kinds = ("connect", "read", "write", "timeout")
    if errors is not None:
        result.socket_errors = {k: int(v) for k, v in zip(kinds, errors.groups(), strict=True)}
    else:
        result.socket_errors = dict.fromkeys(kinds, 0)
    non_2xx = _NON_2XX.search(output)
    if non_2xx is not None:
        result.non_2xx = int(non_2xx.group(1))
    latency = _LATENCY.search(output)
    if latency is not None:
        result.latency_avg = latency.group(1)
    return result
