"""``ctx bench --daemon``: the same queries through a real daemon subprocess, one client and many at once.

The daemon is started the way ``ctx daemon start`` starts it (``python -m ctx.daemon --config PATH``
with the bench home in CTX_HOME) and found the way every client finds it: the home's runtime file.
Only ctx.api and ctx.client are used here: nothing outside cli/ and daemon/ imports from them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctx.api import runtime as rt
from ctx.api.inputs import AssembleIn
from ctx.api.operations import ASSEMBLE
from ctx.bench.figures import percentiles
from ctx.client import DaemonClient
from ctx.errors import CtxError, TransientError, UserError

LOG_NAME = "daemon.log"
START_TIMEOUT_S = 300.0  # the model loads before the daemon announces itself; a busy 2-core box is slow
STOP_TIMEOUT_S = 60.0
REQUESTS_PER_CLIENT = 4  # a concurrent level sends at least this many requests per client
MAX_CLIENTS = 1000
DEFAULT_CLIENTS = (1, 10, 50)


def parse_clients(text: str) -> tuple[int, ...]:
    """``"1,10,50"`` as sorted, distinct client counts, each 1..1000."""
    try:
        counts = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise UserError(f"--clients {text!r}: a comma-separated list of client counts, e.g. 1,10,50") from None
    if not counts or min(counts) < 1 or max(counts) > MAX_CLIENTS:
        raise UserError(f"--clients {text!r}: each count must be between 1 and {MAX_CLIENTS}")
    return tuple(sorted(counts))


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    runtime: rt.Runtime | None = None
    start_seconds: float = 0.0
    exit_code: int | None = None
    peak_rss_mb: float | None = None
    forced: bool = False
    notes: list[str] = field(default_factory=list)


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


def _healthy(runtime: rt.Runtime) -> bool:
    client = DaemonClient(runtime, timeout=2.0)
    try:
        return bool(client.health().get("ok"))
    except CtxError:
        return False
    finally:
        client.close()


def _peak_rss_mb(pid: int) -> float | None:
    """The daemon's own peak resident set (VmHWM), read before it exits; None off Linux."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextmanager
def running_daemon(home: Path, config: Path, env: Mapping[str, str],
                   timeout: float = START_TIMEOUT_S) -> Iterator[DaemonProcess]:
    """A daemon subprocess on ``home``, ready (runtime file written, /healthz answers); always stopped after."""
    log_path = home / LOG_NAME
    command = [sys.executable, "-m", "ctx.daemon", "--config", str(config)]
    started = time.perf_counter()
    with open(log_path, "ab") as log_file:
        # Its own session: a Ctrl-C at the terminal reaches the bench, whose finally stops the daemon.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**env, "CTX_HOME": str(home)})
    daemon = DaemonProcess(proc, log_path)
    try:
        daemon.runtime = _wait_ready(daemon, home, timeout)
        daemon.start_seconds = time.perf_counter() - started
        yield daemon
    finally:
        _stop(daemon, home)


def _wait_ready(daemon: DaemonProcess, home: Path, timeout: float) -> rt.Runtime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = daemon.proc.poll()
        if code is not None:
            raise TransientError(f"the bench daemon exited at start (code {code}): {_last_line(daemon.log_path)} "
                                 f"(log: {daemon.log_path})")
        runtime = rt.read(home)
        if runtime is not None and runtime.pid == daemon.proc.pid and _healthy(runtime):
            return runtime
        time.sleep(0.1)
    raise TransientError(f"the bench daemon (pid {daemon.proc.pid}) did not answer within {timeout:.0f}s: "
                         f"{_last_line(daemon.log_path)}")


def _stop(daemon: DaemonProcess, home: Path) -> None:
    """SIGTERM, wait for the drain and the exit code; SIGKILL only if it hangs."""
    proc = daemon.proc
    if proc.poll() is None:
        daemon.peak_rss_mb = _peak_rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            daemon.forced = True
            daemon.notes.append(f"did not stop within {STOP_TIMEOUT_S:.0f}s of SIGTERM: killed")
            proc.kill()
            proc.wait()
    daemon.exit_code = proc.returncode
    rt.remove(home, proc.pid)  # only if it is this daemon's, and it should already be gone


Sample = tuple[float, dict[str, float]]  # the client's wall time (ms), and the assembler's own timings


def _timed(client: DaemonClient, query: str, budget: int) -> Sample:
    t0 = time.perf_counter()
    out = client.call(ASSEMBLE, AssembleIn(query=query, budget=budget))
    return (time.perf_counter() - t0) * 1000, out["timings"]


def round_trips(runtime: rt.Runtime, count: int) -> list[float]:
    """GET /healthz, one after another: the floor of any request (socket, server, guard, a thread hop)."""
    client = DaemonClient(runtime)
    try:
        latencies = []
        for _ in range(count):
            t0 = time.perf_counter()
            client.health()
            latencies.append((time.perf_counter() - t0) * 1000)
        return latencies
    finally:
        client.close()


def sequential(runtime: rt.Runtime, measured: Sequence[str], budget: int) -> tuple[list[Sample], float]:
    """One client, one request after another: each sample, and the wall time (s)."""
    client = DaemonClient(runtime)
    try:
        started = time.perf_counter()
        samples = [_timed(client, query, budget) for query in measured]
        return samples, time.perf_counter() - started
    finally:
        client.close()


def concurrent(runtime: rt.Runtime, measured: Sequence[str], budget: int, clients: int,
               total: int) -> tuple[list[Sample], float]:
    """``clients`` threads, each with its own connection, released together; ``total`` requests in all.

    Request i is query i (cycling through the measured queries) and goes to client i % clients.
    The wall time runs from the release to the last answer.
    """
    connections = [DaemonClient(runtime) for _ in range(clients)]
    samples: list[list[Sample]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    marks: dict[str, float] = {}
    ends = [0.0] * clients
    barrier = threading.Barrier(clients, action=lambda: marks.__setitem__("start", time.perf_counter()))

    def work(index: int) -> None:
        client = connections[index]
        try:
            client.health()  # the connection is open before the clock starts
            barrier.wait()
            for i in range(index, total, clients):
                samples[index].append(_timed(client, measured[i % len(measured)], budget))
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # boundary: reported by the caller, the other clients stop waiting
            errors.append(exc)
            barrier.abort()
        finally:
            ends[index] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(i,), name=f"bench-client-{i}") for i in range(clients)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for client in connections:
            client.close()
    if errors:
        raise errors[0]
    return [sample for per_client in samples for sample in per_client], max(ends) - marks["start"]


def _level(clients: int, samples: list[Sample], wall_s: float) -> dict[str, Any]:
    latencies = [ms for ms, _ in samples]
    lat = percentiles(latencies)
    # The assembler's own total against what the client waited: the rest is transport, the web
    # framework, JSON both ways, the trace write, and (with many clients) waiting for a CPU.
    inside = [timings.get("total_ms", 0.0) for _, timings in samples]
    outside = [ms - t for ms, t in zip(latencies, inside, strict=True)]
    return {"clients": clients, "requests": len(samples), "wall_seconds": round(wall_s, 3),
            "rps": round(len(samples) / wall_s, 2) if wall_s > 0 else None,
            **{f"{k}_ms": round(v, 3) for k, v in lat.items()},
            "assembler_p50_ms": round(percentiles(inside)["p50"], 3),
            "assembler_p99_ms": round(percentiles(inside)["p99"], 3),
            "outside_assembler_p50_ms": round(percentiles(outside)["p50"], 3),
            "vector_p50_ms": round(percentiles([t.get("vector_ms", 0.0) for _, t in samples])["p50"], 3)}


def measure_daemon(home: Path, config: Path, env: Mapping[str, str], warmup: Sequence[str],
                   measured: Sequence[str], budget: int, clients: Sequence[int], inprocess: dict[str, float],
                   note: Callable[[str], None], forget: Callable[[Sequence[str]], None] | None = None
                   ) -> dict[str, Any]:
    """Start the daemon, time the same queries as the in-process run at each client count, stop it.

    ``inprocess`` holds the in-process p50 and p99 (ms) the added latency is measured against, and
    ``outside_assembler_p50``: what the in-process call spent outside the assembler (request, trace write).
    ``forget`` drops the queries' cached embeddings before each level: the in-process run embedded
    every query once, and a daemon answering from that cache would skip the model and look faster.
    """
    forget = forget or (lambda queries: None)
    note("starting the daemon (python -m ctx.daemon) on the bench home")
    levels: list[dict[str, Any]] = []
    with running_daemon(home, config, env) as daemon:
        assert daemon.runtime is not None
        runtime = daemon.runtime
        note(f"  ready in {daemon.start_seconds:.1f}s at {runtime.address}; {len(warmup)} warm-up requests")
        forget(warmup)
        sequential(runtime, warmup, budget)
        floor = percentiles(round_trips(runtime, len(measured)))
        for count in sorted(set(clients) | {1}):
            forget(measured)
            if count == 1:
                note(f"1 client: {len(measured)} sequential requests")
                samples, wall = sequential(runtime, measured, budget)
            else:
                total = max(len(measured), count * REQUESTS_PER_CLIENT)
                note(f"{count} concurrent clients: {total} requests")
                samples, wall = concurrent(runtime, measured, budget, count, total)
            levels.append(_level(count, samples, wall))
        pid, address = runtime.pid, runtime.address
    one = levels[0]
    note(f"daemon stopped (exit code {daemon.exit_code})")
    return {
        "pid": pid, "address": address, "transport": "unix socket" if address.startswith("unix:") else "tcp",
        "start_seconds": round(daemon.start_seconds, 3), "exit_code": daemon.exit_code,
        "killed": daemon.forced, "notes": daemon.notes,
        "peak_rss_mb": None if daemon.peak_rss_mb is None else round(daemon.peak_rss_mb, 1),
        "warmup": len(warmup), "budget": budget,
        "inprocess_p50_ms": round(inprocess["p50"], 3), "inprocess_p99_ms": round(inprocess["p99"], 3),
        "added_p50_ms": round(one["p50_ms"] - inprocess["p50"], 3),
        "added_p99_ms": round(one["p99_ms"] - inprocess["p99"], 3),
        # The same difference without the assembler's own time, which is the same work on both sides
        # and the noisiest part of either figure: what the daemon really adds per request.
        "added_outside_assembler_p50_ms": round(one["outside_assembler_p50_ms"] - inprocess["outside_assembler_p50"],
                                                3),
        "healthz_p50_ms": round(floor["p50"], 3), "healthz_p99_ms": round(floor["p99"], 3),
        "levels": levels,
    }
