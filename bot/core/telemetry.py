"""What operators see of the work: one log line per job event, and Prometheus metrics.

Each job event (queued, started, a quarter of the way, finished, failed, cancelled,
requeued) is a log record whose fields (`event`, `job_id`, `kind`, `user`: the internal
user number, never a chat id) the JSON log format writes as keys (engine.logs). The
metrics live in this process's own registry, which bot.operations serves.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from storage.records import JobRecord

__all__ = [
    "BATCH_JOBS",
    "ENGINE_RESTARTS",
    "GPU_MEMORY",
    "JOBS",
    "JOB_SECONDS",
    "LANE_BUSY",
    "LANE_JOBS",
    "PICTURES",
    "QUEUE_DEPTH",
    "REFUSALS",
    "REGISTRY",
    "TRAINING_RATE",
    "job_event",
]

_log = logging.getLogger("selfiebooth.jobs")

REGISTRY = CollectorRegistry()
QUEUE_DEPTH = Gauge(
    "selfiebooth_queue_depth", "Jobs waiting in the queue, by kind", ["kind"], registry=REGISTRY
)
JOBS = Counter(
    "selfiebooth_jobs",
    "Job events by kind: queued, started, succeeded, failed, cancelled, requeued",
    ["kind", "event"],
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    "selfiebooth_job_duration_seconds",
    "Time a finished job spent running in the engine, by kind and model family",
    ["kind", "family"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
    registry=REGISTRY,
)
PICTURES = Counter(
    "selfiebooth_pictures",
    "Pictures made and delivered (made), or withheld by the safety filters (withheld)",
    ["outcome"],
    registry=REGISTRY,
)
REFUSALS = Counter(
    "selfiebooth_refusals", "Prompts refused, by category", ["category"], registry=REGISTRY
)
ENGINE_RESTARTS = Counter(
    "selfiebooth_engine_restarts",
    "Engine processes started after the one before ended unexpectedly",
    registry=REGISTRY,
)
TRAINING_RATE = Gauge(
    "selfiebooth_training_steps_per_second",
    "Training speed of the running (or last) training, by model family",
    ["family"],
    registry=REGISTRY,
)
LANE_BUSY = Gauge(
    "selfiebooth_lane_busy",
    "1 while the engine lane runs a job, else 0 (one lane without a cluster)",
    ["lane"],
    registry=REGISTRY,
)
LANE_JOBS = Counter(
    "selfiebooth_lane_jobs",
    "Job runs started on each engine lane, by kind",
    ["lane", "kind"],
    registry=REGISTRY,
)
BATCH_JOBS = Histogram(
    "selfiebooth_batch_jobs",
    "Jobs an engine run takes at once: 1, or the pictures sharing a denoising batch",
    buckets=(1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
GPU_MEMORY = Gauge(
    "selfiebooth_gpu_memory_bytes",
    "CUDA memory the engine process holds (reserved by PyTorch's allocator)",
    registry=REGISTRY,
)


def job_event(
    event: str, job: JobRecord, text: str = "", *, level: int = logging.INFO, **fields: object
) -> None:
    """Log `event` of `job` as one line with its fields, and count it."""
    JOBS.labels(job.kind, event).inc()
    described = f"job {job.id} ({job.kind}, user {job.user_id}): {event}"
    _log.log(
        level,
        f"{described}: {text}" if text else described,
        extra={"event": event, "job_id": job.id, "kind": job.kind, "user": job.user_id, **fields},
    )
