"""A real multi-process Dask cluster on 127.0.0.1 for tests: ``dask scheduler`` + ``dask worker``.

Every process is a subprocess of this interpreter's ``python -m dask`` (same venv), started in
its own session, and is terminated on exit, at interpreter exit, and, should this process be
killed, by the processes themselves (this module is their ``--preload``: ``dask_setup`` exits
when the parent is gone). Workers run without a nanny, so ``kill_worker(i)`` really loses that
worker and its tasks.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import dask

__all__ = ["DaskProcessCluster", "dask_setup"]

_WATCHERS: list[object] = []


def dask_setup(server: object) -> None:
    """Dask preload hook: exit this scheduler/worker process once its parent process is gone."""
    from tornado.ioloop import PeriodicCallback

    parent = os.getppid()

    def check_parent() -> None:
        if os.getppid() != parent:
            os._exit(3)

    watcher = PeriodicCallback(check_parent, 500)
    watcher.start()
    _WATCHERS.append(watcher)


class DaskProcessCluster:
    """A scheduler and ``n_workers`` worker processes of ``nthreads`` threads each."""

    def __init__(self, n_workers: int = 2, nthreads: int = 1, *, timeout: float = 60.0,
                 memory_limit: str = "1GiB") -> None:
        if n_workers < 1 or nthreads < 1:
            raise ValueError("n_workers and nthreads must be at least 1")
        self.n_workers, self.nthreads = n_workers, nthreads
        self.timeout, self.memory_limit = timeout, memory_limit
        self.address: str = ""
        self.worker_addresses: list[str] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._scheduler: subprocess.Popen[bytes] | None = None
        self._workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        assert self._tmp is not None
        log = Path(self._tmp.name) / f"{name}.log"
        self._logs.append(log)
        # what a nanny sets before it starts a worker (distributed.nanny.pre-spawn-environ,
        # e.g. one BLAS/OpenMP thread): these workers run without one
        spawn_env = {k: str(v) for k, v in
                     dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()}
        env = {**os.environ, **spawn_env, "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as out:
            return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=self._tmp.name, start_new_session=True)

    def _log_tail(self, chars: int = 3000) -> str:
        parts = []
        for log in self._logs:
            with contextlib.suppress(OSError):
                parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def _check_alive(self) -> None:
        for proc in [self._scheduler, *self._workers]:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"a Dask process exited with {proc.returncode} during "
                                   f"startup:\n{self._log_tail()}")

    def start(self) -> DaskProcessCluster:
        """Start the scheduler and workers and wait until every worker has registered."""
        atexit.register(self.close)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="rasteret-dask-cluster-")
        scheduler_file = Path(self._tmp.name) / "scheduler.json"
        # port 0: the OS picks a free port; the scheduler file tells us which.
        self._scheduler = self._spawn("scheduler", [
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(scheduler_file), "--preload", __name__])
        for i in range(self.n_workers):
            self._workers.append(self._spawn(f"worker-{i}", [
                "worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
                "--nthreads", str(self.nthreads), "--no-nanny", "--no-dashboard",
                "--name", f"worker-{i}", "--memory-limit", self.memory_limit,
                "--local-directory", str(Path(self._tmp.name) / f"worker-{i}"),
                "--death-timeout", "30", "--preload", __name__]))
        deadline = time.monotonic() + self.timeout
        while not scheduler_file.exists() or not scheduler_file.stat().st_size:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the scheduler did not start:\n{self._log_tail()}")
            time.sleep(0.05)
        for _ in range(100):  # the file may be caught half-written
            with contextlib.suppress(ValueError):
                self.address = json.loads(scheduler_file.read_text())["address"]
                break
            time.sleep(0.05)
        self._wait_for_workers(deadline)

    def _wait_for_workers(self, deadline: float) -> None:
        from distributed import Client

        with Client(self.address, timeout=max(1.0, deadline - time.monotonic()),
                    set_as_default=False) as client:
            while len(client.scheduler_info(n_workers=-1)["workers"]) < self.n_workers:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers did not register:\n{self._log_tail()}")
                time.sleep(0.1)
            pids = client.run(os.getpid)
        by_pid = {pid: address for address, pid in pids.items()}
        self.worker_addresses = [by_pid.get(proc.pid, "") for proc in self._workers]

    def close(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL after 5 s) and remove the temp dir."""
        atexit.unregister(self.close)
        procs = [p for p in [*self._workers, self._scheduler] if p is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._workers, self._scheduler = [], None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- inspection and faults ----------------------------------------------------------------
    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes in start order (killed ones included)."""
        return [proc.pid for proc in self._workers]

    def kill_worker(self, i: int) -> int:
        """SIGKILL worker ``i`` (no clean shutdown: its tasks and data are lost); return its PID."""
        proc = self._workers[i]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return proc.pid

    def __enter__(self) -> DaskProcessCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
