"""Stage leases: one run computes a stage, the others that need it at the same time wait and reuse it.

Without them, two runs started together (a nightly run and a manual one) both compute every stage and
only one copy is kept: correct, but on 2 cores each run took 17-40x as long. A lease is a claim on
computing one stage key, stored beside the stages as ``<stage>/.lease-<key>/<generation>.json``:

- Acquiring creates the next generation's file exclusively: a local hard link of a finished temp file
  (fails if the name exists), or an S3 PUT with ``If-None-Match: *``. Of any number of runs, one wins.
- The holder renews its file every `LeasePolicy.renew_every_s` from a background thread, and removes the
  lease when the stage is published or its computation failed.
- A waiter polls for the published stage. It takes a lease over (by creating the next generation) when
  the holder is gone: a process on this host that no longer exists, or a lease not renewed for
  `LeasePolicy.ttl_s` of the waiter's own clock (so hosts' clocks need not agree). It gives up after
  `LeasePolicy.wait_timeout_s` with an error naming the holder.

Leases only save work: publishing stays atomic on its own, so a holder presumed dead that was merely
slow publishes the same stage, and the first verified copy wins as before.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LEASE_DIR_PREFIX = ".lease-"
_GENERATION = re.compile(r"^(\d{6})\.json$")


@dataclass(frozen=True)
class LeasePolicy:
    """How long leases live and how long a run waits for another run's stage.

    Attributes:
        ttl_s: a lease not renewed for this long (by the waiter's clock) is stale: its holder is presumed
            dead and the waiter computes the stage itself.
        renew_every_s: the holder renews its lease this often (well below `ttl_s`).
        poll_s: a waiter checks for the published stage this often.
        wait_timeout_s: a waiter gives up after this long, with an error naming the holder; None: never.
    """

    ttl_s: float = 90.0
    renew_every_s: float = 15.0
    poll_s: float = 2.0
    wait_timeout_s: float | None = 6 * 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_every_s < self.ttl_s:
            raise ValueError(f"LeasePolicy needs 0 < renew_every_s < ttl_s; got renew_every_s={self.renew_every_s!r}, "
                             f"ttl_s={self.ttl_s!r}")
        if self.poll_s <= 0 or (self.wait_timeout_s is not None and self.wait_timeout_s <= 0):
            raise ValueError(f"LeasePolicy poll_s and wait_timeout_s must be positive; got {self.poll_s!r}, "
                             f"{self.wait_timeout_s!r}")


class LeaseWaitTimeout(TimeoutError):
    """Another run held a stage's lease, alive, for longer than `LeasePolicy.wait_timeout_s`."""


@dataclass(frozen=True)
class LeaseRecord:
    """What a lease file says: who holds it (host, pid and a token) and how often it was renewed."""

    host: str
    pid: int
    token: str
    renewals: int = 0

    @classmethod
    def mine(cls) -> LeaseRecord:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(8))

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"

    def to_bytes(self) -> bytes:
        return json.dumps({"host": self.host, "pid": self.pid, "token": self.token,
                           "renewals": self.renewals}).encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> LeaseRecord | None:
        try:
            values = json.loads(data)
            return cls(str(values["host"]), int(values["pid"]), str(values["token"]), int(values["renewals"]))
        except (ValueError, KeyError, TypeError):
            return None

    def holder_gone(self) -> bool:
        """True when the holder is a process on this host that no longer exists, or this very process
        and not one of its live leases (a release whose removal failed, e.g. during a storage outage)."""
        if self.host != socket.gethostname():
            return False
        if self.pid == os.getpid():
            return self.token not in Lease.live_tokens
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # exists, another user's
            return False
        return False


class LeaseFiles:
    """The lease files of one stage key, on the store's filesystem (local or S3)."""

    def __init__(self, fs: Any, directory: str, local: bool, call: Callable[[Callable[[], Any], str], Any]) -> None:
        self.fs, self.dir, self.local, self._call = fs, directory, local, call

    def latest(self) -> tuple[int, bytes] | None:
        """(generation, content) of the newest lease file, or None when there is none."""
        try:
            names = self._call(lambda: self.fs.ls(self.dir, detail=False), f"list {self.dir}")
        except (FileNotFoundError, NotADirectoryError):
            return None
        generations = sorted(int(m[1]) for n in names if (m := _GENERATION.match(n.rstrip("/").rsplit("/", 1)[-1])))
        for generation in reversed(generations):
            try:
                return generation, self._call(lambda g=generation: self.fs.cat_file(self._path(g)), "read a lease")
            except FileNotFoundError:  # released between listing and reading
                continue
        return None

    def create(self, generation: int, data: bytes) -> bool:
        """Create the file of `generation` holding `data`, unless it exists; True when this call created it."""
        path = self._path(generation)
        if not self.local:
            try:
                self._call(lambda: self.fs.pipe_file(path, data, mode="create"), f"create lease {path}")
                return True
            except FileExistsError:
                return False
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(self.dir) / f".tmp-{secrets.token_hex(6)}"
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # atomic, and fails if `path` exists: readers never see a half-written lease
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def overwrite(self, generation: int, data: bytes) -> None:
        path = self._path(generation)
        if self.local:
            tmp = Path(self.dir) / f".tmp-{secrets.token_hex(6)}"
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            self._call(lambda: self.fs.pipe_file(path, data), f"renew lease {path}")

    def remove_up_to(self, generation: int) -> None:
        """Remove the files of generations up to `generation` (a newer one belongs to a run that took over)."""
        for older in range(generation, -1, -1):
            path = self._path(older)
            try:
                self._call(lambda p=path: self.fs.rm_file(p), f"release lease {path}")
            except FileNotFoundError:
                pass
        if self.local:
            try:
                os.rmdir(self.dir)
            except OSError:  # a newer generation, or another run's temp file, is still there
                pass

    def _path(self, generation: int) -> str:
        return f"{self.dir}/{generation:06d}.json"


class Lease:
    """A held lease: renewed by a background thread until `release()`."""

    # Tokens of the leases this process holds now: a lease file of this process with another token is
    # one whose release could not remove it.
    live_tokens: set[str] = set()

    def __init__(self, files: LeaseFiles, generation: int, record: LeaseRecord, policy: LeasePolicy) -> None:
        self.files, self.generation, self.record, self.policy = files, generation, record, policy
        Lease.live_tokens.add(record.token)  # already there when `acquire_or_wait` made it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{files.dir}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        renewals = 0
        while not self._stop.wait(self.policy.renew_every_s):
            renewals += 1
            record = LeaseRecord(self.record.host, self.record.pid, self.record.token, renewals)
            try:
                self.files.overwrite(self.generation, record.to_bytes())
            except OSError as exc:  # the next renewal may get through; waiters allow a whole ttl_s
                logger.warning("could not renew the lease %s: %s", self.files.dir, exc)

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.files.remove_up_to(self.generation)
        except OSError as exc:  # a leftover file is taken over: at once here, after ttl_s elsewhere
            logger.warning("could not remove the lease %s: %s", self.files.dir, exc)
        finally:  # not before: another thread of this process would take the file for a failed release
            Lease.live_tokens.discard(self.record.token)


def acquire_or_wait(files: LeaseFiles, policy: LeasePolicy, published: Callable[[], Any],
                    what: str) -> tuple[Lease | None, Any]:
    """Hold the lease of a stage, or wait until another run published it.

    Returns `(lease, None)` when this run holds the lease and must compute the stage (then release the
    lease), or `(None, found)` when `published()` returned something (the stage, published by another
    run) while waiting or right after acquiring. `what` names the stage in log lines and errors.
    """
    started = time.monotonic()
    seen: tuple[int, bytes] | None = None  # the lease as last read, and since when (our clock) unchanged
    seen_since = started
    announced = False
    while True:
        latest = files.latest()
        if latest != seen:
            seen, seen_since = latest, time.monotonic()
        holder = LeaseRecord.parse(latest[1]) if latest else None
        stale = latest is not None and ((holder is not None and holder.holder_gone())
                                        or time.monotonic() - seen_since >= policy.ttl_s)
        if latest is None or stale:
            generation = latest[0] + 1 if latest else 0
            mine = LeaseRecord.mine()
            # Live before the file exists: another thread of this process that reads the file then must not
            # take it for a lease this process failed to remove.
            Lease.live_tokens.add(mine.token)
            try:
                created = files.create(generation, mine.to_bytes())
            except BaseException:
                Lease.live_tokens.discard(mine.token)
                raise
            if created:
                if stale:
                    logger.warning("%s: took over the lease of %s, which stopped renewing it", what,
                                   holder.describe() if holder else "an unreadable holder")
                lease = Lease(files, generation, mine, policy)
                if (found := published()) is not None:  # published between our look and our lease
                    lease.release()
                    return None, found
                return lease, None
            Lease.live_tokens.discard(mine.token)
            continue  # another run won this generation: look again
        if not announced:
            logger.info("%s: %s is computing it; waiting to reuse it", what,
                        holder.describe() if holder else "another run")
            announced = True
        time.sleep(policy.poll_s)
        if (found := published()) is not None:
            logger.info("%s: reused what %s computed, after waiting %.0f s", what,
                        holder.describe() if holder else "another run", time.monotonic() - started)
            return None, found
        if policy.wait_timeout_s is not None and time.monotonic() - started > policy.wait_timeout_s:
            raise LeaseWaitTimeout(
                f"{what}: waited {policy.wait_timeout_s:.0f} s for {holder.describe() if holder else 'another run'}"
                f" to compute it, and it still renews its lease ({files.dir}); let that run finish, or stop it "
                "(a stopped run's lease is taken over)"
            )
