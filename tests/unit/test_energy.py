"""Energy meters: NVML and RAPL through fakes, the estimate for real, and every fallback's reason.

This machine has no GPU, no NVML library and no readable RAPL counters. NVML is faked by a
``pynvml`` module put in ``sys.modules``; RAPL by a powercap tree in a temporary directory that
the real pyJoules code reads (its ``RAPL_API_DIR`` pointed there), so pyJoules' own domain
discovery and microjoule files are exercised.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from archsmith.config import Settings
from archsmith.energy import (
    EnergyMeter,
    EnergyReading,
    EnergySource,
    EnergySourceUnavailableError,
    EstimateMeter,
    Measurement,
    NvmlMeter,
    RaplMeter,
    make_meter,
)
from archsmith.metrics import PUE, power_watts

# ---------------------------------------------------------------------------------------------
# Fakes


class FakeNVMLError(Exception):
    """Stands in for ``pynvml.NVMLError``."""


class FakeNvml(types.ModuleType):
    """A ``pynvml`` whose energy counters (millijoules) the test sets by hand."""

    NVMLError = FakeNVMLError

    def __init__(self, *, init_error: str | None = None, energy_error: str | None = None) -> None:
        super().__init__("pynvml")
        self.init_error = init_error
        self.energy_error = energy_error
        self.energy_mj: dict[tuple[str, object], int] = {}
        self.handles: list[tuple[str, object]] = []
        self.init_calls = 0
        self.shutdown_calls = 0

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's name
        self.init_calls += 1
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdown_calls += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[str, object]:  # noqa: N802
        handle = ("index", index)
        self.handles.append(handle)
        return handle

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> tuple[str, object]:  # noqa: N802
        handle = ("uuid", uuid)
        self.handles.append(handle)
        return handle

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: tuple[str, object]) -> int:  # noqa: N802
        if self.energy_error is not None:
            raise FakeNVMLError(self.energy_error)
        return self.energy_mj.get(handle, 0)


class FakeRapl:
    """A powercap tree in the layout pyJoules reads: ``intel-rapl:S/energy_uj`` and sub-zones."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def socket(self, socket: int, uj: int, *, dram_uj: int | None = None) -> None:
        zone = self.root / f"intel-rapl:{socket}"
        zone.mkdir(parents=True)
        (zone / "name").write_text(f"package-{socket}\n")
        (zone / "energy_uj").write_text(f"{uj}\n")
        # A core sub-zone first, so DRAM is found by name rather than by position; its energy is
        # part of the package's and must not be added again.
        core = zone / f"intel-rapl:{socket}:0"
        core.mkdir()
        (core / "name").write_text("core\n")
        (core / "energy_uj").write_text("999999999\n")
        if dram_uj is not None:
            dram = zone / f"intel-rapl:{socket}:1"
            dram.mkdir()
            (dram / "name").write_text("dram\n")
            (dram / "energy_uj").write_text(f"{dram_uj}\n")

    def set(self, socket: int, uj: int, *, dram_uj: int | None = None) -> None:
        zone = self.root / f"intel-rapl:{socket}"
        (zone / "energy_uj").write_text(f"{uj}\n")
        if dram_uj is not None:
            (zone / f"intel-rapl:{socket}:1" / "energy_uj").write_text(f"{dram_uj}\n")


@pytest.fixture
def rapl_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Points pyJoules at ``tmp_path/intel-rapl``, which does not exist until a test builds it."""
    from pyJoules.device import rapl_device

    root = tmp_path / "intel-rapl"
    monkeypatch.setattr(rapl_device, "RAPL_API_DIR", str(root))
    return root


@pytest.fixture
def fake_rapl(rapl_dir: Path) -> FakeRapl:
    return FakeRapl(rapl_dir)


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


# ---------------------------------------------------------------------------------------------
# Readings and Eq. 4


def test_sources_are_the_contracts_strings() -> None:
    assert [s.value for s in EnergySource] == ["nvml", "rapl", "estimate"]


def test_kwh_pue_of_one_kwh_is_the_pue_factor() -> None:
    reading = EnergyReading(joules=3.6e6, seconds=3600.0, source="nvml", detail="x")
    assert reading.kwh_pue == pytest.approx(1.58)
    assert reading.kwh_pue == pytest.approx(PUE)
    assert reading.mean_watts == pytest.approx(1000.0)


def test_reading_is_frozen_strict_and_round_trips() -> None:
    reading = EnergyReading(joules=1.0, seconds=0.0, source=EnergySource.RAPL, detail="RAPL")
    assert reading.mean_watts == 0.0
    assert EnergyReading.model_validate_json(reading.model_dump_json()) == reading
    with pytest.raises(ValidationError):
        reading.joules = 2.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        EnergyReading(joules=-1.0, seconds=1.0, source="nvml", detail="x")
    with pytest.raises(ValidationError):
        EnergyReading(joules=math.nan, seconds=1.0, source="nvml", detail="x")
    with pytest.raises(ValidationError):
        EnergyReading(joules=1.0, seconds=1.0, source="guess", detail="x")
    with pytest.raises(ValidationError):
        EnergyReading.model_validate(
            {"joules": 1.0, "seconds": 1.0, "source": "nvml", "detail": "x", "watts": 3}
        )


def test_estimate_watts_is_eq4s_power_sum() -> None:
    """The estimate source's power is Eq. 4's sum, one GPU on CUDA and none on the CPU."""
    settings = Settings(cpu_watts=65.0, ram_watts=5.0, gpu_watts=250.0)
    assert settings.estimate_watts("cuda:1") == pytest.approx(320.0)
    assert settings.estimate_watts("cpu") == pytest.approx(70.0)
    assert settings.estimate_watts("cuda") == power_watts(65.0, 5.0, 250.0, 1)


@pytest.mark.parametrize(
    "args",
    [(-1.0, 0.0, 0.0, 1), (0.0, math.inf, 0.0, 1), (0.0, 0.0, math.nan, 1), (1.0, 1.0, 1.0, -1)],
)
def test_power_watts_rejects_bad_powers(args: tuple[float, float, float, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        power_watts(*args)


# ---------------------------------------------------------------------------------------------
# The estimate, for real


def test_estimate_meter_is_watts_times_elapsed_time() -> None:
    meter = EstimateMeter(95.0)
    assert isinstance(meter, EnergyMeter)
    before = time.perf_counter()
    with meter.measure() as m:
        time.sleep(0.05)
    elapsed = time.perf_counter() - before
    reading = m.reading
    assert reading.source is EnergySource.ESTIMATE
    assert 0.05 <= reading.seconds <= elapsed
    assert reading.joules == pytest.approx(95.0 * reading.seconds)
    assert reading.detail.startswith("estimate: 95.0 W x ")


def test_reading_is_only_there_after_the_block() -> None:
    with EstimateMeter(10.0).measure() as m, pytest.raises(RuntimeError, match="still running"):
        _ = m.reading
    assert m.reading.source is EnergySource.ESTIMATE


def test_reading_is_kept_when_the_block_raises() -> None:
    meter = EstimateMeter(10.0)
    slots: list[Measurement] = []

    def train() -> None:
        with meter.measure() as m:
            slots.append(m)
            raise KeyError("the training failed")

    with pytest.raises(KeyError):
        train()
    assert slots[0].reading.source is EnergySource.ESTIMATE
    with pytest.raises(RuntimeError, match="not started"):
        meter.stop()  # the failed block stopped the meter


def test_stop_without_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        EstimateMeter(10.0).stop()


def test_laps_split_the_interval() -> None:
    meter = EstimateMeter(100.0)
    meter.start()
    first = meter.lap()
    time.sleep(0.01)
    second = meter.stop()
    assert second.seconds >= 0.01 > first.seconds
    assert second.joules == pytest.approx(100.0 * second.seconds)


def test_estimate_meter_rejects_negative_watts() -> None:
    with pytest.raises(ValueError, match="watts"):
        EstimateMeter(-5.0)


# ---------------------------------------------------------------------------------------------
# NVML through a fake pynvml


def test_nvml_counter_difference_in_joules(fake_nvml: FakeNvml, rapl_dir: Path) -> None:
    fake_nvml.energy_mj[("index", 1)] = 10_000
    meter = make_meter("cuda:1", 300.0)
    assert isinstance(meter, NvmlMeter)
    assert meter.source is EnergySource.NVML
    with meter.measure() as m:
        fake_nvml.energy_mj[("index", 1)] = 11_500
    assert fake_nvml.handles == [("index", 1)]
    assert m.reading.source is EnergySource.NVML
    assert m.reading.joules == pytest.approx(1.5)
    assert "GPU 1" in m.reading.detail
    assert "GPU energy only" in m.reading.detail


def test_plain_cuda_means_gpu_0(fake_nvml: FakeNvml) -> None:
    make_meter("cuda", 300.0)
    assert fake_nvml.handles == [("index", 0)]


def test_cuda_visible_devices_maps_to_nvml_index(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    make_meter("cuda:1", 300.0)
    assert fake_nvml.handles == [("index", 5)]


def test_cuda_visible_devices_by_uuid(fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234abcd")
    meter = make_meter("cuda:0", 300.0)
    assert fake_nvml.handles == [("uuid", "GPU-1234abcd")]
    assert "GPU-1234abcd" in meter.detail


def test_gpu_hidden_by_cuda_visible_devices_falls_back(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, rapl_dir: Path
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    meter = make_meter("cuda:1", 300.0)
    assert meter.source is EnergySource.ESTIMATE
    assert "no NVML (cuda:1 is not in CUDA_VISIBLE_DEVICES='0')" in meter.detail
    assert fake_nvml.handles == []


def test_nvml_counter_wrap_falls_back_to_estimate(fake_nvml: FakeNvml) -> None:
    fake_nvml.energy_mj[("index", 0)] = 50_000
    meter = make_meter("cuda:0", 200.0)
    meter.start()
    fake_nvml.energy_mj[("index", 0)] = 1_000
    reading = meter.stop()
    assert reading.source is EnergySource.ESTIMATE
    assert reading.joules == pytest.approx(200.0 * reading.seconds)
    assert "went backwards" in reading.detail
    assert "50.000 J -> 1.000 J" in reading.detail
    # The next reading measures again.
    meter.start()
    fake_nvml.energy_mj[("index", 0)] = 3_000
    assert meter.stop().source is EnergySource.NVML


def test_nvml_read_failure_mid_run_falls_back(fake_nvml: FakeNvml) -> None:
    meter = make_meter("cuda:0", 200.0)
    meter.start()
    fake_nvml.energy_error = "GPU is lost"
    reading = meter.stop()
    assert reading.source is EnergySource.ESTIMATE
    assert "could not be read: GPU is lost" in reading.detail


def test_nvml_wrap_without_fallback_power_raises(fake_nvml: FakeNvml) -> None:
    fake_nvml.energy_mj[("index", 0)] = 5_000
    meter = NvmlMeter(0)
    meter.start()
    fake_nvml.energy_mj[("index", 0)] = 0
    with pytest.raises(EnergySourceUnavailableError, match="no fallback power"):
        meter.stop()


def test_nvml_init_failure_falls_back_with_its_reason(fake_nvml: FakeNvml, rapl_dir: Path) -> None:
    fake_nvml.init_error = "NVML Shared Library Not Found"
    meter = make_meter("cuda:0", 250.0)
    assert isinstance(meter, EstimateMeter)
    assert "no NVML (nvmlInit failed: NVML Shared Library Not Found)" in meter.detail
    assert "no RAPL (no powercap interface at" in meter.detail
    with meter.measure() as m:
        pass
    assert m.reading.source is EnergySource.ESTIMATE
    assert "no NVML (nvmlInit failed" in m.reading.detail


def test_gpu_without_energy_counter_falls_back_and_shuts_nvml_down(
    fake_nvml: FakeNvml, rapl_dir: Path
) -> None:
    fake_nvml.energy_error = "Not Supported"
    meter = make_meter("cuda:0", 250.0)
    assert "no NVML (no total-energy counter for GPU 0: Not Supported)" in meter.detail
    assert fake_nvml.init_calls == fake_nvml.shutdown_calls == 1


def test_missing_pynvml_falls_back(monkeypatch: pytest.MonkeyPatch, rapl_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes ``import pynvml`` fail
    meter = make_meter("cuda:0", 250.0)
    assert "no NVML (nvidia-ml-py (pynvml) is not installed" in meter.detail


# ---------------------------------------------------------------------------------------------
# RAPL through a fake powercap tree read by pyJoules


def test_rapl_sums_packages_and_dram_in_joules(fake_rapl: FakeRapl) -> None:
    fake_rapl.socket(0, 1_000_000, dram_uj=500_000)
    fake_rapl.socket(1, 2_000_000)  # a socket without a DRAM domain
    meter = make_meter("cpu", 95.0)
    assert isinstance(meter, RaplMeter)
    with meter.measure() as m:
        fake_rapl.set(0, 3_500_000, dram_uj=750_000)
        fake_rapl.set(1, 3_000_000)
    reading = m.reading
    assert reading.source is EnergySource.RAPL
    assert reading.joules == pytest.approx(2.5 + 0.25 + 1.0)
    assert reading.detail.startswith("RAPL package-0 + package-1 + dram-0")
    assert "no GPU" in reading.detail


def test_gpu_without_nvml_uses_rapl(fake_nvml: FakeNvml, fake_rapl: FakeRapl) -> None:
    fake_nvml.init_error = "Driver Not Loaded"
    fake_rapl.socket(0, 0, dram_uj=0)
    meter = make_meter("cuda:0", 300.0)
    assert meter.source is EnergySource.RAPL


def test_rapl_wrap_falls_back_to_estimate(fake_rapl: FakeRapl) -> None:
    fake_rapl.socket(0, 262_000_000_000, dram_uj=0)
    meter = make_meter("cpu", 40.0)
    meter.start()
    fake_rapl.set(0, 1_000, dram_uj=10)
    reading = meter.stop()
    assert reading.source is EnergySource.ESTIMATE
    assert reading.joules == pytest.approx(40.0 * reading.seconds)
    assert "RAPL package-0 + dram-0 went backwards" in reading.detail


def test_unreadable_rapl_counter_falls_back(fake_rapl: FakeRapl, rapl_dir: Path) -> None:
    fake_rapl.socket(0, 0, dram_uj=0)
    # A directory where the counter should be: unreadable even for root, unlike a chmod.
    (rapl_dir / "intel-rapl:0" / "energy_uj").unlink()
    (rapl_dir / "intel-rapl:0" / "energy_uj").mkdir()
    meter = make_meter("cpu", 40.0)
    assert isinstance(meter, EstimateMeter)
    assert "no RAPL (RAPL counters not readable: IsADirectoryError" in meter.detail


def test_rapl_without_package_domain_falls_back(rapl_dir: Path) -> None:
    rapl_dir.mkdir()
    meter = make_meter("cpu", 40.0)
    assert "no RAPL (no RAPL package domain under" in meter.detail


def test_rapl_meter_alone_reports_why_it_cannot_measure(rapl_dir: Path) -> None:
    with pytest.raises(EnergySourceUnavailableError) as info:
        RaplMeter()
    assert info.value.source is EnergySource.RAPL
    assert "no powercap interface" in info.value.reason


# ---------------------------------------------------------------------------------------------
# make_meter's choices


def test_cpu_without_rapl_is_an_explained_estimate(rapl_dir: Path) -> None:
    meter = make_meter("cpu", 65.0)
    assert isinstance(meter, EstimateMeter)
    assert meter.source is EnergySource.ESTIMATE
    assert f"no RAPL (no powercap interface at {rapl_dir}" in meter.detail


def test_cpu_on_this_machine_never_raises() -> None:
    """Unpatched: whatever this machine offers, a meter comes back and says what it is."""
    meter = make_meter("cpu", 65.0)
    with meter.measure() as m:
        pass
    if m.reading.source is EnergySource.ESTIMATE:
        assert "no RAPL (" in m.reading.detail
    else:
        assert m.reading.source is EnergySource.RAPL


def test_gpu_on_this_machine_never_raises() -> None:
    meter = make_meter("cuda:0", 300.0)
    with meter.measure() as m:
        pass
    if m.reading.source is EnergySource.ESTIMATE:
        assert "no NVML (" in m.reading.detail


def test_prefer_estimate_skips_the_counters(fake_nvml: FakeNvml) -> None:
    meter = make_meter("cuda:0", 300.0, prefer=[EnergySource.ESTIMATE, EnergySource.NVML])
    assert isinstance(meter, EstimateMeter)
    assert meter.detail == "estimate at 300.0 W; estimate preferred"
    assert fake_nvml.init_calls == 0


def test_prefer_reorders_sources(fake_nvml: FakeNvml, fake_rapl: FakeRapl) -> None:
    fake_rapl.socket(0, 0)
    meter = make_meter("cuda:0", 300.0, prefer=[EnergySource.RAPL, EnergySource.NVML])
    assert meter.source is EnergySource.RAPL
    assert fake_nvml.init_calls == 0


def test_nvml_is_not_for_the_cpu(fake_nvml: FakeNvml, rapl_dir: Path) -> None:
    meter = make_meter("cpu", 65.0, prefer=[EnergySource.NVML])
    assert meter.detail == "estimate at 65.0 W; no NVML (device is 'cpu', not a GPU)"


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "mps", ""])
def test_unknown_device_is_rejected(device: str) -> None:
    with pytest.raises(ValueError, match="device must be"):
        make_meter(device, 10.0)


def test_make_meter_rejects_bad_power() -> None:
    with pytest.raises(ValueError, match="estimate_watts"):
        make_meter("cpu", math.nan)


def test_import_is_light() -> None:
    """The sandbox imports this module before every job; the counter libraries load on demand."""
    code = (
        "import sys, archsmith.energy; "
        "loaded = [m for m in ('pynvml', 'pyJoules', 'torch') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    result: Any = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
