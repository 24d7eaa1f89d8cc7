"""Workers: the claim loop, leases and heartbeats, the rescuer, the runner of one job."""

from exportd.events.wakeup import Waker
from exportd.worker.attempt import Attempt
from exportd.worker.runner import JobRunner
from exportd.worker.worker import Worker, make_worker_id

__all__ = ["Attempt", "JobRunner", "Waker", "Worker", "make_worker_id"]
