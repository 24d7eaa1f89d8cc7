"""Metrics, logs and request ids.

- `metrics`: exportd's Prometheus metrics (`REGISTRY`), what records them, and the
  collector that reads queue depth and stored bytes from the job store at scrape time.
- `logs`: `configure_logging` routes the standard library's logging through structlog
  (JSON, console or key=value lines); `job_context` binds a job's identity to every line
  logged while it runs.
- `attempts`: what the worker records when an attempt starts and ends.
- `requests` (imported by the API only): request ids, access lines and HTTP metrics.
"""

from exportd.observability.logs import configure_logging, job_context
from exportd.observability.metrics import REGISTRY, record_delivery
from exportd.observability.settings import ObservabilitySettings

__all__ = [
    "REGISTRY",
    "ObservabilitySettings",
    "configure_logging",
    "job_context",
    "record_delivery",
]
