"""Model-based test of the job queue (G23): a hypothesis state machine drives a real Redis store
(enqueue, fetch, ack, renew, hand back, a stale token's ack, waiting past the lease) and checks,
after every step, that every job is in exactly one state (the one the model allows), that the
per-state counts add up to the jobs enqueued, and that at most one ack is accepted per job."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from durable_redis.storage.job_types import JobAck, JobLease, JobOutcome, JobState, NewJob
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LOCK_MS = 500
MARGIN_MS = 150  # a lease this close to its deadline may or may not be honoured


@dataclass
class Job:
    state: JobState = JobState.QUEUED
    lease: JobLease | None = None  # the newest lease handed out
    old: list[JobLease] = field(default_factory=list)  # superseded leases
    accepted_acks: int = 0


def now_ms() -> float:
    return time.time() * 1000


class JobQueueMachine(RuleBasedStateMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = RedisStore.from_url(self.url, namespace=f"model-{uuid.uuid4().hex[:8]}")
        self.jobs: dict[str, Job] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()

    def live(self, job: Job) -> bool:
        return job.lease is not None and now_ms() < job.lease.lease_until_ms - MARGIN_MS

    def expired(self, job: Job) -> bool:
        return job.lease is not None and now_ms() > job.lease.lease_until_ms + MARGIN_MS

    def running(self) -> list[str]:
        return sorted(j for j, job in self.jobs.items() if job.state is JobState.RUNNING)

    @rule(n=st.integers(1, 3))
    def enqueue(self, n: int) -> None:
        new = [f"j{len(self.jobs) + i}" for i in range(n)]
        self.run(
            self.store.enqueue_jobs(
                [NewJob(job_id=j, name="m", spec=b"x", result_ttl_ms=600_000) for j in new]
            )
        )
        for j in new:
            self.jobs[j] = Job()

    @rule(limit=st.integers(1, 3))
    def fetch(self, limit: int) -> None:
        leases = self.run(self.store.fetch_jobs("w", limit=limit, lock_ms=LOCK_MS))
        for lease in leases:
            job = self.jobs[lease.job_id]
            assert job.state is not JobState.COMPLETED, f"{lease.job_id} delivered after its ack"
            if job.state is JobState.RUNNING:
                assert not self.live(job), f"{lease.job_id} leased twice while its lease lived"
                assert job.lease is not None
                job.old.append(job.lease)
            job.state, job.lease = JobState.RUNNING, lease

    def _ack(self, lease: JobLease, outcome: JobOutcome) -> bool:
        accepted: bool = self.run(self.store.ack_jobs([JobAck(lease=lease, outcome=outcome)]))[0]
        return accepted

    @precondition(lambda self: bool(self.running()))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.running()))
        job = self.jobs[job_id]
        assert job.lease is not None
        was_live = self.live(job)
        accepted = self._ack(job.lease, JobOutcome.COMPLETED)
        if was_live:
            assert accepted, f"ack of {job_id}'s live lease refused"
        if accepted:
            job.accepted_acks += 1
            job.state, job.lease = JobState.COMPLETED, None
        # refused once expired: the job stays running until a fetch requeues it

    @precondition(lambda self: any(job.old for job in self.jobs.values()))
    @rule(data=st.data())
    def stale_ack(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(j for j, job in self.jobs.items() if job.old)))
        job = self.jobs[job_id]
        accepted = self._ack(data.draw(st.sampled_from(job.old)), JobOutcome.COMPLETED)
        assert not accepted, f"a superseded token's ack of {job_id} was accepted"

    @precondition(lambda self: bool(self.running()))
    @rule()
    def renew(self) -> None:
        ids = self.running()
        leases = [self.jobs[j].lease for j in ids]
        live = {j for j in ids if self.live(self.jobs[j])}
        lost = set(self.run(self.store.renew_jobs([le for le in leases if le], LOCK_MS)))
        assert not lost & live, f"live leases reported lost: {sorted(lost & live)}"
        for j in ids:
            job = self.jobs[j]
            if j not in lost and job.lease is not None:
                job.lease = JobLease(**{**_fields(job.lease), "lease_until_ms": now_ms() + LOCK_MS})

    @precondition(lambda self: bool(self.running()))
    @rule(data=st.data())
    def hand_back(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.running()))
        job = self.jobs[job_id]
        assert job.lease is not None
        was_live = self.live(job)
        accepted = self._ack(job.lease, JobOutcome.HAND_BACK)
        if was_live:
            assert accepted, f"hand-back of {job_id}'s live lease refused"
        if accepted:
            job.old.append(job.lease)
            job.state, job.lease = JobState.QUEUED, None

    @precondition(lambda self: bool(self.running()))
    @rule()
    def wait_past_the_lease(self) -> None:
        time.sleep((LOCK_MS + MARGIN_MS + 50) / 1000)

    @invariant()
    def every_job_in_exactly_one_allowed_state(self) -> None:
        counts = self.run(self.store.job_counts())
        assert sum(counts.values()) == len(self.jobs), (counts, len(self.jobs))
        seen: Counter[JobState] = Counter()
        for job_id, job in self.jobs.items():
            record = self.run(self.store.get_job(job_id))
            assert record is not None, f"{job_id} lost"
            seen[record.state] += 1
            assert job.accepted_acks <= 1, job_id
            if job.state is JobState.RUNNING and self.expired(job):
                allowed = {JobState.RUNNING, JobState.QUEUED}  # requeued lazily, by a fetch
            else:
                allowed = {job.state}
            assert record.state in allowed, (job_id, record.state, job.state)
        assert {s: n for s, n in counts.items() if n} == {s: n for s, n in seen.items() if n}


def _fields(lease: JobLease) -> dict[str, Any]:
    return {f: getattr(lease, f) for f in JobLease.__slots__}


def test_job_queue_state_machine(redis_url: str) -> None:
    JobQueueMachine.url = redis_url
    run_state_machine_as_test(
        JobQueueMachine,
        settings=settings(
            max_examples=int(os.environ.get("MODEL_EXAMPLES", "25")),
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
