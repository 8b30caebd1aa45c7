"""What the parts of ``scale_bench.py`` share: memory and CPU accounting, a time and memory
guard, and a spawned client process that runs one measured job against a Dask cluster.

Imported by ``scale_bench.py`` and its ``_scale_*`` modules (the scripts' folder is first on
``sys.path`` when they run, and spawned children inherit it).
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import gc
import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import pyarrow as pa

LATENCY = 0.040


def status_bytes(key: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key + ":"))


def release_memory() -> int:
    """Free what can be freed (gc, malloc_trim), reset VmHWM; return the RSS."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    return status_bytes("VmRSS")


def cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) so far of each group of processes, and of the whole
    machine ("machine")."""
    machine = psutil.cpu_times()
    out = {"machine": sum(getattr(machine, f, 0.0) for f in (
        "user", "nice", "system", "irq", "softirq", "steal"))}
    for name, group in pids.items():
        out[name] = 0.0
        for pid in group:
            with contextlib.suppress(psutil.NoSuchProcess):
                out[name] += sum(psutil.Process(pid).cpu_times()[:2])
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per group CPU seconds between two :func:`cpu_of`; "other" is the rest of the machine."""
    out = {k: after[k] - before.get(k, 0.0) for k in after if k != "machine"}
    out["other"] = max(0.0, after["machine"] - before["machine"] - sum(out.values()))
    return out


def timed(run: Callable[[], Any], pids: dict[str, list[int]]
          ) -> tuple[float, dict[str, float], Any]:
    """(seconds, CPU s per group: ``pids``, "server" (other children), "main", "other"
    (the machine's other processes), result)."""
    me = psutil.Process()
    known = {pid for group in pids.values() for pid in group}
    groups = {**pids, "server": [p.pid for p in me.children(recursive=True)
                                 if p.pid not in known], "main": [me.pid]}
    before, started = cpu_of(groups), time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    return seconds, cpu_delta(before, cpu_of(groups)), result


def guarded(call, budget: float, cap: float) -> tuple[object, float, str | None]:
    """(result, seconds, None) of ``call()``, else (None, s, why) if past budget s / cap bytes."""
    state: dict = {}

    def watchdog() -> None:
        while not state.get("done"):
            if time.perf_counter() - started > budget:
                state["why"] = f"stopped at the {budget:.0f} s budget"
            elif status_bytes("VmRSS") > cap:
                state["why"] = f"stopped at the {cap / 1e9:.0f} GB RSS cap"
            if "why" in state:
                return _thread.interrupt_main()
            time.sleep(0.05)
    thread, started, result = threading.Thread(target=watchdog), time.perf_counter(), None
    thread.start()
    try:
        result = call()
    except KeyboardInterrupt:
        if "why" not in state:
            raise
    finally:
        state["done"], seconds = True, time.perf_counter() - started
        thread.join()
    return result, seconds, state.get("why")


def _high_water(pid: int) -> int:
    """VmHWM of process ``pid`` in bytes (0 if it is gone)."""
    with contextlib.suppress(OSError, StopIteration), open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:"))
    return 0


def run_client(job: Callable[..., Any], kwargs: dict[str, Any], pids: dict[str, list[int]],
               budget: float, probe: Callable[[float], dict] | None = None) -> dict:
    """Run ``job(**kwargs)`` in a spawned client process, measured, for at most ``budget`` s.

    The child imports and prepares (``job`` returns the callable to time, see
    :func:`_client_main`), says it is ready, then runs it when told; the parent takes the CPU
    seconds of ``pids`` and of the child over exactly that run, and the child's high-water RSS.
    A run still going at ``budget`` is stopped (the child is killed). Returns the job's dict
    (when it ended) plus ``seconds``, ``cpu`` (per group of ``pids``, "client" and "other"),
    ``peak_rss`` (bytes), ``stopped`` (why the run was stopped, or None), ``error`` (a one-line
    error, or None) and ``probe(start)`` (``time.time()`` at the start) when given.
    """
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_client_main, args=(child, job, kwargs))
    process.start()
    child.close()
    groups = {**pids, "client": [process.pid]}
    out: dict[str, Any] = {"error": "the client process died before it was ready"}
    try:
        if parent.poll(600) and parent.recv() == "ready":
            before, went, started = cpu_of(groups), time.time(), time.perf_counter()
            parent.send("go")
            if parent.poll(budget):
                out = {"stopped": None, **parent.recv()}
            else:
                out = {"error": None, "stopped": f"stopped at the {budget:.0f} s budget",
                       "seconds": time.perf_counter() - started}
            out["peak_rss"] = _high_water(process.pid)
            out["cpu"] = cpu_delta(before, cpu_of(groups))
            if probe is not None:
                out.update(probe(went))
    except EOFError:
        out = {"error": "the client process died"}
    finally:
        process.kill()
        process.join()
    return out


def _client_main(conn, job: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Child body: ``run = job(**kwargs)`` prepares (connect, load, plan inputs); ``run()``
    is timed and returns a dict."""
    try:
        run = job(**kwargs)
    except Exception as exc:  # reported, not raised: the parent prints it
        conn.send("ready")
        conn.recv()
        conn.send({"error": f"{type(exc).__name__}: {exc}"[:300]})
        return
    release_memory()  # also resets the high-water mark: the parent reads the run's peak
    conn.send("ready")
    conn.recv()
    started = time.perf_counter()
    try:
        out = run()
        out.setdefault("error", None)
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                        [:300]}
    out["seconds"] = time.perf_counter() - started
    conn.send(out)
    conn.recv()  # stay alive until the parent has read this process's peak RSS and CPU
