"""Server metrics in the Prometheus text exposition format (version 0.0.4), without a client library.

Counters and histograms keyed by label values; one `Metrics` object per app, so two apps in one
process (tests, benchmarks) never share numbers.
"""

from __future__ import annotations

import math
import threading
from typing import Callable, Dict, List, Sequence, Tuple

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # seconds
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # requests per forward pass

Labels = Tuple[Tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Counter:
    def __init__(self, name: str, help: str, label_names: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help, tuple(label_names)
        self.values: Dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple((name, str(labels[name])) for name in self.label_names)
        with self._lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> List[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self.values.items())
        if not items and not self.label_names:
            items = [((), 0.0)]
        lines += [f"{self.name}{_labels(key)} {_number(value)}" for key, value in items]
        return lines


class Gauge:
    """A value read when /metrics is scraped."""

    def __init__(self, name: str, help: str, read: Callable[[], float]):
        self.name, self.help, self.read = name, help, read

    def render(self) -> List[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {_number(self.read())}"]


class Histogram:
    def __init__(self, name: str, help: str, buckets: Sequence[float]):
        self.name, self.help = name, help
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.buckets) if value <= bound), len(self.buckets))
        with self._lock:
            self.counts[index] += 1
            self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def render(self) -> List[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            counts, total = list(self.counts), self.sum
        cumulative = 0
        for bound, count in zip(list(self.buckets) + [math.inf], counts):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines += [f"{self.name}_sum {_number(total)}", f"{self.name}_count {cumulative}"]
        return lines


class Metrics:
    """Everything /metrics reports for one app."""

    def __init__(self, prefix: str = "deepspeech"):
        self.prefix = prefix
        self.requests = Counter(f"{prefix}_http_requests_total", "HTTP requests answered, by path and status.",
                                ("method", "path", "status"))
        self.errors = Counter(f"{prefix}_errors_total", "Requests answered with an error, by error code.",
                              ("code",))
        self.latency = Histogram(f"{prefix}_transcribe_latency_seconds",
                                 "Time from a /transcribe request's arrival to its answer, any status.", LATENCY_BUCKETS)
        self.audio_seconds = Counter(f"{prefix}_audio_seconds_total", "Seconds of audio transcribed.")
        self.transcriptions = Counter(f"{prefix}_transcriptions_total", "Audio files transcribed.")
        self.batch_size = Histogram(f"{prefix}_batch_size", "Requests transcribed together in one forward pass.",
                                    BATCH_BUCKETS)
        self.queue_depth = lambda: 0.0
        self.model_loaded = False

    def render(self) -> str:
        gauges = [Gauge(f"{self.prefix}_queue_depth", "Requests waiting for the model.", lambda: self.queue_depth()),
                  Gauge(f"{self.prefix}_model_loaded", "1 when the model is loaded and requests are served.",
                        lambda: float(self.model_loaded))]
        lines: List[str] = []
        for metric in (self.requests, self.errors, self.latency, self.audio_seconds, self.transcriptions,
                       self.batch_size, *gauges):
            lines += metric.render()
        return "\n".join(lines) + "\n"
