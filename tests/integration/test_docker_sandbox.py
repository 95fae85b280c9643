"""The Docker backend against a real engine: isolation, limits, cleanup and error reporting.

Skipped with the reason when no engine or no image is present, except under
ARCHSMITH_REQUIRE_DOCKER=1 (CI), where that is a failure. Most checks run a probe script in place
of the runner (``ProbeSandbox``), so they test the container itself rather than one tool.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from archsmith.sandbox.base import SANDBOX_DATA, SANDBOX_WORK, SandboxError, SandboxJob
from archsmith.sandbox.base import SandboxLimits as Limits
from archsmith.sandbox.docker import (
    LABEL,
    OWNER_LABEL,
    SANDBOX_ENV,
    SANDBOX_UID,
    DockerSandbox,
    build_command,
    docker_available,
    ensure_image,
    owner_id,
    remove_orphans,
)
from archsmith.sandbox.pyview import python_view

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("ARCHSMITH_SANDBOX_IMAGE", "archsmith-sandbox:ci")
REQUIRED = os.environ.get("ARCHSMITH_REQUIRE_DOCKER", "") == "1"
EXPECTED_UID = SANDBOX_UID if os.getuid() == 0 else os.getuid()

# Runs inside the container as its only process (under the init); reads its mode from job.json
# and writes result.json the way the runner does.
PROBE = r"""
import errno, json, os, signal, socket, sys, threading, time

work = "/sandbox/work"
job = json.load(open(os.path.join(work, "job.json")))
mode = job["args"]["mode"]
out = {}

def attempt(fn):
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok"

def touch(path):
    with open(path, "w") as f:
        f.write("x")

if mode == "isolation":
    out["uid"] = os.getuid()
    out["write_etc"] = attempt(lambda: touch("/etc/probe"))
    out["write_usr"] = attempt(lambda: touch("/usr/probe"))
    out["write_python"] = attempt(lambda: touch(os.path.join(sys.prefix, "probe")))
    out["write_tmp"] = attempt(lambda: touch("/tmp/probe"))
    out["write_work"] = attempt(lambda: touch(os.path.join(work, "probe")))
    out["interfaces"] = sorted(os.listdir("/sys/class/net"))
    out["connect"] = attempt(lambda: socket.create_connection(("192.0.2.1", 80), timeout=3))
    out["resolve"] = attempt(lambda: socket.getaddrinfo("example.com", 80))
    status = dict(
        line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
        if ":\t" in line
    )
    out["cap_eff"] = status["CapEff"].strip()
    out["cap_bnd"] = status["CapBnd"].strip()
    out["no_new_privs"] = status["NoNewPrivs"].strip()
    out["visible_pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    data = job.get("dataset_path")
    if data:
        out["data"] = open(data, "rb").read().decode()
        out["write_data"] = attempt(lambda: touch(data))
elif mode == "threads":
    stop = threading.Event()
    started = 0
    try:
        for _ in range(500):
            threading.Thread(target=stop.wait, daemon=True).start()
            started += 1
    except RuntimeError as e:
        out["error"] = str(e)
    stop.set()
    out["started"] = started
elif mode == "memory":
    blocks = []
    for _ in range(64):
        blocks.append(b"x" * (64 << 20))  # written, so resident
    out["allocated_mb"] = 64 * 64
elif mode == "sleep":
    if job["args"].get("ignore_sigint"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("probe sleeping", flush=True)
    time.sleep(120)
elif mode == "plant":
    # A result that is a link to a file only the host can read, instead of a result.
    result = os.path.join(work, "result.json")
    try:
        os.remove(result)
    except OSError as e:
        print("remove:", e.strerror, flush=True)
    os.symlink(job["args"]["target"], result)
    sys.exit(0)

with open(os.path.join(work, "result.json"), "w") as f:  # a file the host lent: written in place
    json.dump({"ok": True, "result": out, "error": None}, f)
"""

FAST_MODEL = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
"""
SHAPE_ARGS = {"input_shape": [3, 8, 8], "num_classes": 10}


class ProbeSandbox(DockerSandbox):
    """Runs the probe script instead of the runner, with every isolation setting unchanged."""

    def _command(self, job: SandboxJob) -> list[str]:
        return [f"{sys.prefix}/bin/python", f"{SANDBOX_WORK}/probe.py"]


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    ok, reason = docker_available(image=IMAGE)
    if not ok:
        if REQUIRED:
            pytest.fail(f"ARCHSMITH_REQUIRE_DOCKER=1 but no usable Docker sandbox: {reason}")
        pytest.skip(reason)
    return docker.from_env()


def _leftovers(engine: docker.DockerClient) -> list[str]:
    """This test process's containers: another process's (a CI run killed earlier) are not ours."""
    mine = f"{OWNER_LABEL}={owner_id()}"
    return [c.name for c in engine.containers.list(all=True, filters={"label": [LABEL, mine]})]


@pytest.fixture
def no_leftovers(engine: docker.DockerClient) -> Iterator[None]:
    """Every test ends with no archsmith container left, whatever happened in it."""
    assert _leftovers(engine) == [], "containers left over from before this test"
    yield
    assert _leftovers(engine) == []


@pytest.fixture
def sandbox(engine: docker.DockerClient, no_leftovers: None) -> DockerSandbox:
    return DockerSandbox(IMAGE, mount_host_python=True, client=engine)


@pytest.fixture
def probe_sandbox(engine: docker.DockerClient, no_leftovers: None) -> ProbeSandbox:
    return ProbeSandbox(IMAGE, mount_host_python=True, client=engine)


@pytest.fixture
def probe_file(tmp_path: Path) -> Path:
    path = tmp_path / "probe.py"
    path.write_text(PROBE, encoding="utf-8")
    return path


def probe_job(probe_file: Path, mode: str, **kwargs: Any) -> SandboxJob:
    limits = kwargs.pop("limits", Limits(wall_time_s=60))
    args = {"mode": mode, **kwargs.pop("args", {})}
    return SandboxJob(
        tool="selftest", args=args, input_files={"probe.py": probe_file}, limits=limits, **kwargs
    )


def test_selftest_runs_as_non_root_and_returns_a_structured_result(sandbox: DockerSandbox) -> None:
    result = sandbox.run(SandboxJob(tool="selftest"))
    assert result.ok, result
    assert result.backend == "docker"
    assert result.error is None
    assert result.work_dir is None  # temporary, already removed
    assert 0 < result.wall_time_s < 60
    assert result.result is not None
    assert result.result["uid"] == EXPECTED_UID != 0
    assert result.result["cwd"] == SANDBOX_WORK
    assert result.result["work_dir_writable"] is True
    assert result.result["python"] == ".".join(map(str, sys.version_info[:3]))


def test_environment_is_only_the_allow_list(
    sandbox: DockerSandbox, engine: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-must-not-leak")
    monkeypatch.setenv("GOOGLE_API_KEY", "must-not-leak")
    monkeypatch.setenv("ARCHSMITH_SECRET", "must-not-leak")
    result = sandbox.run(SandboxJob(tool="selftest"))
    assert result.ok, result
    assert result.result is not None
    keys = set(result.result["env_keys"])
    image_env = {e.split("=", 1)[0] for e in engine.images.get(IMAGE).attrs["Config"]["Env"] or []}
    # HOSTNAME is set by the engine; everything else comes from the allow-list or the image.
    assert keys == set(SANDBOX_ENV) | {"OMP_NUM_THREADS", "HOSTNAME"} | image_env
    assert not keys & {"OPENAI_API_KEY", "GOOGLE_API_KEY", "ARCHSMITH_SECRET"}


def test_kept_work_dir_holds_the_job_and_belongs_to_the_host_user(
    sandbox: DockerSandbox, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    result = sandbox.run(SandboxJob(tool="selftest", code="x = 1\n"), work_dir=work)
    assert result.ok, result
    assert result.work_dir == work.resolve()
    assert {p.name for p in work.iterdir()} >= {"job.json", "result.json", "candidate.py"}
    for path in [work, *work.rglob("*")]:
        assert path.lstat().st_uid == os.getuid(), path


def test_root_is_read_only_network_is_none_and_privileges_are_dropped(
    probe_sandbox: ProbeSandbox, probe_file: Path, tmp_path: Path
) -> None:
    data = tmp_path / "tiny.npz"
    data.write_text("dataset bytes", encoding="utf-8")
    result = probe_sandbox.run(probe_job(probe_file, "isolation", dataset_path=data))
    assert result.ok, result
    r = result.result
    assert r is not None
    assert r["uid"] == EXPECTED_UID != 0
    assert r["write_etc"] == r["write_usr"] == "EROFS"
    assert r["write_python"] == "EROFS"  # the mounted interpreter and venv are read-only
    assert r["write_tmp"] == r["write_work"] == "ok"
    assert r["interfaces"] == ["lo"]
    assert r["connect"] in {"ENETUNREACH", "EHOSTUNREACH"}
    assert r["resolve"] != "ok"
    assert int(r["cap_eff"], 16) == 0
    assert int(r["cap_bnd"], 16) == 0
    assert r["no_new_privs"] == "1"
    assert len(r["visible_pids"]) <= 3  # the init, the probe, and nothing of the host
    assert r["data"] == "dataset bytes"
    assert r["write_data"] == "EROFS"
    assert data.read_text(encoding="utf-8") == "dataset bytes"


def test_process_limit_stops_a_thread_storm(probe_sandbox: ProbeSandbox, probe_file: Path) -> None:
    limits = Limits(wall_time_s=60, max_processes=32)
    result = probe_sandbox.run(probe_job(probe_file, "threads", limits=limits))
    assert result.ok, result
    assert result.result is not None
    assert result.result["started"] < 32
    assert "can't start new thread" in result.result["error"]


def test_memory_limit_kills_and_is_reported_as_out_of_memory(
    probe_sandbox: ProbeSandbox, probe_file: Path
) -> None:
    limits = Limits(wall_time_s=120, memory_mb=256)
    result = probe_sandbox.run(probe_job(probe_file, "memory", limits=limits))
    assert not result.ok
    assert result.error is not None
    assert result.error.type == "OutOfMemory", result
    assert "256 MiB" in result.error.message


def test_wall_time_interrupts_then_returns_a_timeout(
    probe_sandbox: ProbeSandbox, probe_file: Path
) -> None:
    limits = Limits(wall_time_s=2, grace_s=20)
    start = time.monotonic()
    result = probe_sandbox.run(probe_job(probe_file, "sleep", limits=limits))
    elapsed = time.monotonic() - start
    assert result.error is not None
    assert result.error.type == "Timeout"
    assert "probe sleeping" in result.stdout_tail
    # SIGINT reached the probe through the init: it stopped long before the grace ran out.
    assert "KeyboardInterrupt" in result.stderr_tail
    assert 2 <= elapsed < 2 + 15


def test_wall_time_escalates_to_sigkill_when_sigint_is_ignored(
    probe_sandbox: ProbeSandbox, probe_file: Path
) -> None:
    limits = Limits(wall_time_s=2, grace_s=2)
    start = time.monotonic()
    job = probe_job(probe_file, "sleep", args={"ignore_sigint": True}, limits=limits)
    result = probe_sandbox.run(job)
    elapsed = time.monotonic() - start
    assert result.error is not None
    assert result.error.type == "Timeout"
    assert 2 + 2 <= elapsed < 2 + 2 + 15


def test_candidate_that_sleeps_is_stopped_at_the_wall_time(sandbox: DockerSandbox) -> None:
    code = "import time\ntime.sleep(60)\n" + FAST_MODEL
    limits = Limits(wall_time_s=4, grace_s=2)
    start = time.monotonic()
    result = sandbox.run(SandboxJob(tool="build", args=SHAPE_ARGS, code=code, limits=limits))
    assert time.monotonic() - start < 4 + 2 + 15
    assert not result.ok
    assert result.error is not None
    assert result.error.type == "Timeout"


def test_candidate_runs_with_torch_through_the_real_runner(sandbox: DockerSandbox) -> None:
    job = SandboxJob(tool="build", args=SHAPE_ARGS, code=FAST_MODEL)
    result = sandbox.run(job)
    assert result.ok, result
    assert result.result is not None
    assert result.result["output_shape"] == [2, 10]
    assert result.result["matches"] is True


def test_candidate_out_of_memory_is_a_result_not_a_crash(sandbox: DockerSandbox) -> None:
    code = FAST_MODEL + "\nimport torch\nHOG = torch.ones(1 << 30)  # 4 GiB\n"
    limits = Limits(wall_time_s=120, memory_mb=1024)
    result = sandbox.run(SandboxJob(tool="build", args=SHAPE_ARGS, code=code, limits=limits))
    assert not result.ok
    assert result.error is not None
    assert result.error.type == "OutOfMemory", result


def test_result_planted_as_a_link_to_a_host_file_is_not_followed(
    probe_sandbox: ProbeSandbox, probe_file: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "host-only.json"
    secret.write_text(json.dumps({"ok": True, "result": {"key": "HOST-SECRET"}, "error": None}))
    work = tmp_path / "work"
    job = probe_job(probe_file, "plant", args={"target": str(secret)})
    result = probe_sandbox.run(job, work_dir=work)
    assert not result.ok
    assert "HOST-SECRET" not in result.model_dump_json()
    assert result.error is not None
    assert result.error.type == "NoResult"
    # result.json is a file the host lent the job: it could be neither removed nor replaced by a
    # link; left empty, it is no result. The host file is unchanged.
    assert "remove: Device or resource busy" in result.stdout_tail
    assert not any(p.is_symlink() for p in work.iterdir())
    assert "HOST-SECRET" in secret.read_text()


def test_python_in_a_system_prefix_is_refused_not_mounted(
    sandbox: DockerSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    python_view.cache_clear()
    try:
        with pytest.raises(SandboxError, match="cannot mount /usr"):
            sandbox.container_config(SandboxJob(tool="selftest"), tmp_path, "1:1")
    finally:
        monkeypatch.undo()
        python_view.cache_clear()


def test_container_is_removed_when_the_host_is_interrupted(
    probe_sandbox: ProbeSandbox, probe_file: Path, engine: docker.DockerClient
) -> None:
    main = threading.main_thread().ident
    assert main == threading.get_ident()  # the signal must reach the thread blocked in run()
    seen: list[str] = []
    watcher_client = docker.from_env()  # its own connection: the main thread is blocked in one

    def interrupt_once_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # This process's containers only: tests in other workers start their own.
            running = watcher_client.containers.list(
                filters={"label": [LABEL, f"{OWNER_LABEL}={owner_id()}"], "status": "running"}
            )
            if running:
                seen.extend(c.name for c in running)
                time.sleep(0.5)
                signal.pthread_kill(main, signal.SIGINT)
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=interrupt_once_running, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        probe_sandbox.run(probe_job(probe_file, "sleep", limits=Limits(wall_time_s=120)))
    watcher.join(5)
    assert len(seen) == 1
    assert _leftovers(engine) == []


def test_container_of_a_process_that_died_is_removed_by_the_next_run(
    sandbox: DockerSandbox, engine: docker.DockerClient
) -> None:
    """A run killed with -9 leaves its container; the next archsmith on the host removes it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = engine.containers.create(
        IMAGE, ["sleep", "600"], labels={LABEL: "orphan", OWNER_LABEL: owner_id(dead.pid)}
    )
    live = engine.containers.create(
        IMAGE, ["sleep", "600"], labels={LABEL: "live", OWNER_LABEL: owner_id(os.getppid())}
    )
    other_host = engine.containers.create(
        IMAGE,
        ["sleep", "600"],
        labels={LABEL: "elsewhere", OWNER_LABEL: f"not-this-host:{dead.pid}"},
    )
    try:
        assert sandbox.run(SandboxJob(tool="selftest")).ok
        names = {c.name for c in engine.containers.list(all=True, filters={"label": LABEL})}
        assert orphan.name not in names
        assert {live.name, other_host.name} <= names
        assert remove_orphans(engine) == []
    finally:
        for container in (live, other_host):
            container.remove(force=True)


def test_start_overhead_is_measured_and_logged(
    sandbox: DockerSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="archsmith.sandbox.docker")
    start = time.monotonic()
    result = sandbox.run(SandboxJob(tool="selftest"))
    total = time.monotonic() - start
    assert result.ok, result
    lines = [r.getMessage() for r in caplog.records if "end to end" in r.getMessage()]
    assert len(lines) == 1
    end_to_end, start_to_exit, inside = map(float, re.findall(r"([\d.]+) s", lines[0]))
    assert 0 < inside <= start_to_exit <= end_to_end <= total
    assert result.wall_time_s == pytest.approx(start_to_exit, abs=1e-3)


def test_container_config_sets_every_limit(sandbox: DockerSandbox, tmp_path: Path) -> None:
    limits = Limits(memory_mb=512, max_processes=64, max_file_size_mb=100, cpu_time_s=30)
    job = SandboxJob(tool="selftest", limits=limits)
    config = sandbox.container_config(job, tmp_path, "10001:10001")
    assert config["read_only"] is True
    assert config["network_mode"] == "none"
    assert config["cap_drop"] == ["ALL"]
    assert config["security_opt"] == ["no-new-privileges:true"]
    assert config["mem_limit"] == config["memswap_limit"] == "512m"
    assert config["pids_limit"] == 64
    assert config["nano_cpus"] > 0
    assert {u["Name"]: u["Hard"] for u in config["ulimits"]} == {
        "fsize": 100 << 20,
        "core": 0,
        "cpu": 30,
    }
    assert "device_requests" not in config
    assert LABEL in config["labels"]


def test_gpus_are_requested_for_cuda_jobs_only(engine: docker.DockerClient, tmp_path: Path) -> None:
    cuda = SandboxJob(tool="selftest", device="cuda:0")
    cpu = SandboxJob(tool="selftest")
    auto = DockerSandbox(IMAGE, client=engine)
    assert "device_requests" in auto.container_config(cuda, tmp_path, "1:1")
    assert "device_requests" not in auto.container_config(cpu, tmp_path, "1:1")
    never = DockerSandbox(IMAGE, client=engine, gpus=False)
    assert "device_requests" not in never.container_config(cuda, tmp_path, "1:1")
    always = DockerSandbox(IMAGE, client=engine, gpus=True)
    requests = always.container_config(cpu, tmp_path, "1:1")["device_requests"]
    assert requests[0]["Count"] == -1
    assert requests[0]["Capabilities"] == [["gpu"]]


@pytest.mark.gpu
def test_cuda_is_visible_inside_with_gpus(
    sandbox: DockerSandbox, engine: docker.DockerClient
) -> None:
    if "nvidia" not in (engine.info().get("Runtimes") or {}):
        pytest.skip("the engine has no NVIDIA runtime (nvidia-container-toolkit)")
    job = SandboxJob(tool="build", args=SHAPE_ARGS, code=FAST_MODEL, device="cuda")
    result = sandbox.run(job)
    assert result.ok, result


def test_missing_image_names_the_build_command(engine: docker.DockerClient) -> None:
    image = "archsmith-sandbox:no-such-tag"
    with pytest.raises(SandboxError, match=re.escape(build_command(image))):
        DockerSandbox(image, mount_host_python=True, client=engine).run(SandboxJob(tool="selftest"))
    with pytest.raises(SandboxError, match=r"docker build -f Dockerfile\.sandbox"):
        ensure_image(image, engine)
    ok, reason = docker_available(engine, image=image)
    assert not ok
    assert build_command(image) in reason


def test_missing_dataset_is_a_sandbox_error(sandbox: DockerSandbox, tmp_path: Path) -> None:
    job = SandboxJob(tool="selftest", dataset_path=tmp_path / "absent.npz")
    with pytest.raises(SandboxError, match=r"absent\.npz"):
        sandbox.run(job)


def test_no_engine_is_reported_not_raised_by_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"unix://{tmp_path}/no-docker.sock"
    client = docker.DockerClient(base_url=nowhere, version="1.41")
    ok, reason = docker_available(client)
    assert not ok
    assert reason
    with pytest.raises(SandboxError):
        DockerSandbox(IMAGE, client=client).run(SandboxJob(tool="selftest"))
    monkeypatch.setenv("DOCKER_HOST", nowhere)
    ok, reason = docker_available()
    assert not ok
    assert "no Docker engine" in reason


def test_sandbox_paths_in_the_job_are_the_containers(
    sandbox: DockerSandbox, tmp_path: Path
) -> None:
    data = tmp_path / "set.npz"
    data.write_bytes(b"")
    work = tmp_path / "work"
    result = sandbox.run(SandboxJob(tool="selftest", dataset_path=data), work_dir=work)
    assert result.ok, result
    job = json.loads((work / "job.json").read_text(encoding="utf-8"))
    assert job["dataset_path"] == f"{SANDBOX_DATA}/set.npz"
    assert str(tmp_path) not in result.model_dump_json(exclude={"work_dir"})
