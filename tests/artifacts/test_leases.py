"""Stage leases (setfit_core/artifacts/leases.py): one run computes a stage, concurrent ones wait and reuse it;
a crashed holder's lease is taken over; a live one is waited for up to a timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.leases import LeasePolicy, LeaseRecord, LeaseWaitTimeout
from tests.artifacts.test_store import KEY, STAGE, write_stage

QUICK = LeasePolicy(ttl_s=1.0, renew_every_s=0.2, poll_s=0.05, wait_timeout_s=30)


def _store(store: ArtifactStore, policy: LeasePolicy = QUICK) -> ArtifactStore:
    """The same root and backend with another lease policy (a store is cheap to make)."""
    cache = None if store.is_local else store._cache_root
    return ArtifactStore(store.root, cache_dir=cache, lease_policy=policy)


def _lease_files(store: ArtifactStore) -> list[str]:
    fs, base = store._fs, f"{store._base}/{STAGE}"
    try:
        return sorted(p.rsplit("/", 1)[-1] for p in fs.find(base) if "/.lease-" in p)
    except FileNotFoundError:
        return []


def _plant_lease(store: ArtifactStore, record: LeaseRecord) -> None:
    """A lease file as another run would have left it."""
    directory = f"{store._base}/{STAGE}/.lease-{KEY}"
    if store.is_local:
        Path(directory).mkdir(parents=True)
    store._fs.pipe_file(f"{directory}/000000.json", record.to_bytes())


def test_a_free_stage_is_claimed_and_the_lease_goes_when_released(store):
    store = _store(store)
    lease, found = store.claim(STAGE, KEY)
    assert found is None and lease is not None and _lease_files(store) == ["000000.json"]
    write_stage(store)
    lease.release()
    assert _lease_files(store) == []
    lease, found = store.claim(STAGE, KEY)  # published now: nothing to compute
    assert lease is None and found.key == KEY


def test_a_second_run_waits_for_the_first_and_reuses_its_stage(store):
    first, second = _store(store), _store(store)
    lease, _ = first.claim(STAGE, KEY)
    outcome = {}
    waiter = threading.Thread(target=lambda: outcome.update(zip(("lease", "found"), second.claim(STAGE, KEY),
                                                                strict=True)))
    waiter.start()
    time.sleep(1.5)  # longer than ttl_s: the first run renews its lease, so the second keeps waiting
    assert waiter.is_alive()
    write_stage(first)
    lease.release()
    waiter.join(timeout=30)
    assert outcome["lease"] is None and outcome["found"].key == KEY


def test_of_many_runs_racing_for_a_free_stage_one_holds_the_lease(store):
    stores = [_store(store, LeasePolicy(ttl_s=60, renew_every_s=10, poll_s=0.05, wait_timeout_s=30))
              for _ in range(4)]
    results, barrier = [None] * 4, threading.Barrier(4)

    def race(i: int) -> None:
        barrier.wait()
        lease, found = stores[i].claim(STAGE, KEY)
        results[i] = "computed" if lease else "reused"
        if lease:
            time.sleep(0.5)
            write_stage(stores[i])
            lease.release()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == ["computed", "reused", "reused", "reused"]


def test_the_lease_of_a_process_that_died_is_taken_over_at_once(store):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _plant_lease(store, LeaseRecord(socket.gethostname(), int(dead.stdout), "crashed"))
    started = time.monotonic()
    lease, found = _store(store, LeasePolicy(ttl_s=600, renew_every_s=10, poll_s=0.05)).claim(STAGE, KEY)
    assert lease is not None and found is None and time.monotonic() - started < 5
    assert lease.generation == 1
    lease.release()
    assert _lease_files(store) == []  # the dead run's generation is removed too


def test_a_lease_this_process_failed_to_remove_is_taken_over_at_once(store):
    """A release during a storage outage can leave the file behind; this process knows it holds no such lease."""
    _plant_lease(store, LeaseRecord(socket.gethostname(), os.getpid(), "released-during-an-outage"))
    started = time.monotonic()
    lease, _ = _store(store, LeasePolicy(ttl_s=600, renew_every_s=10, poll_s=0.05)).claim(STAGE, KEY)
    assert lease is not None and time.monotonic() - started < 5
    lease.release()


def test_a_lease_nobody_renews_is_taken_over_after_its_ttl(store):
    _plant_lease(store, LeaseRecord("another-host", 1, "silent"))  # another host: no pid to check
    started = time.monotonic()
    lease, _ = _store(store).claim(STAGE, KEY)
    assert lease is not None and 1.0 <= time.monotonic() - started < 10
    lease.release()


def test_a_live_holder_is_waited_for_up_to_the_timeout_then_named(store):
    holder, _ = _store(store).claim(STAGE, KEY)
    patient = LeasePolicy(ttl_s=1.0, renew_every_s=0.2, poll_s=0.05, wait_timeout_s=1.5)
    try:
        with pytest.raises(LeaseWaitTimeout, match=rf"waited 2 s for process \d+ on {socket.gethostname()}.*still "
                                                    r"renews its lease"):
            _store(store, patient).claim(STAGE, KEY)
    finally:
        holder.release()


def test_policy_values_are_checked():
    with pytest.raises(ValueError, match="renew_every_s < ttl_s"):
        LeasePolicy(ttl_s=10, renew_every_s=10)
