"""Energy measurement around training and inference, each figure labelled with its source.

Three sources, best first: ``nvml`` (the GPU's cumulative total-energy counter, Volta and newer),
``rapl`` (CPU package and DRAM counters under ``/sys/class/powercap``, read through pyJoules) and
``estimate`` (elapsed time x a configured power). This module runs inside the sandbox, often with
no GPU, no NVML library or no readable ``/sys``; so ``pynvml`` and ``pyJoules`` are imported only
when a meter is built, and a missing or failing counter never raises from ``make_meter`` or a
meter's ``stop``: the meter falls back to the next source and the reading's ``detail`` says why,
so a person can tell a measured figure from a guessed one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from archsmith.errors import ArchsmithError
from archsmith.metrics import joules_to_kwh_pue

__all__ = [
    "ESTIMATE_BASIS",
    "SOURCES",
    "EnergyMeter",
    "EnergyReading",
    "EnergySource",
    "EnergySourceUnavailableError",
    "EstimateMeter",
    "Measurement",
    "NvmlMeter",
    "RaplMeter",
    "SourceInfo",
    "energy_scope",
    "make_meter",
]

logger = logging.getLogger(__name__)

_MJ_PER_J = 1e3  # NVML reports millijoules.
_UJ_PER_J = 1e6  # RAPL (energy_uj) reports microjoules.


class EnergySource(str, Enum):
    """Where an energy figure comes from; stored with every figure."""

    NVML = "nvml"
    RAPL = "rapl"
    ESTIMATE = "estimate"


_LABEL = {EnergySource.NVML: "NVML", EnergySource.RAPL: "RAPL", EnergySource.ESTIMATE: "estimate"}


@dataclass(frozen=True)
class SourceInfo:
    """What a figure from one source is: measured or not, how it was got, what it covers.

    The one description every view prints (the report, the model card, the CLI): read without its
    scope, a GPU-only figure looks like a whole machine's, and figures from different counters look
    comparable when they are not.
    """

    measured: bool
    how: str
    scope: str


#: What an estimate is made of.
ESTIMATE_BASIS = "elapsed time x configured power (CPU and RAM, plus one GPU on CUDA)"
SOURCES: dict[str, SourceInfo] = {
    EnergySource.NVML.value: SourceInfo(
        True, "read from the GPU's total-energy counter", "GPU only"
    ),
    EnergySource.RAPL.value: SourceInfo(
        True, "read from the CPU's package and DRAM energy counters", "CPU package and DRAM only"
    ),
    EnergySource.ESTIMATE.value: SourceInfo(False, ESTIMATE_BASIS, "estimate"),
}


def energy_scope(source: object) -> str:
    """The scope of a figure from ``source`` (nvml, rapl, estimate); says so when unknown."""
    if source is None:
        return "source not recorded"
    info = SOURCES.get(str(source))
    return info.scope if info is not None else f"scope unknown (source {source})"


class EnergySourceUnavailableError(ArchsmithError):
    """A source cannot measure here; ``reason`` goes into the detail of the fallback's readings."""

    def __init__(self, source: EnergySource, reason: str) -> None:
        super().__init__(f"{_LABEL[source]} unavailable: {reason}")
        self.source = source
        self.reason = reason


class EnergyReading(BaseModel):
    """Energy used over one measured interval, with where the figure comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    joules: float = Field(ge=0.0, allow_inf_nan=False, description="Energy in joules.")
    seconds: float = Field(ge=0.0, allow_inf_nan=False, description="Wall-clock interval, s.")
    source: EnergySource = Field(description="nvml, rapl or estimate.")
    detail: str = Field(
        min_length=1, description="What was measured, or why this is an estimate and at what power."
    )

    @property
    def kwh_pue(self) -> float:
        """The energy in kWh-PUE (Eq. 4's 1.58 factor), the unit CM's energy budgets use."""
        return joules_to_kwh_pue(self.joules)

    @property
    def mean_watts(self) -> float:
        """Average power over the interval; 0 for an empty interval."""
        return self.joules / self.seconds if self.seconds > 0 else 0.0


def _watts(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of watts >= 0, got {value!r}")
    return float(value)


class Measurement:
    """The result slot of ``meter.measure()``, filled when the ``with`` block exits."""

    def __init__(self) -> None:
        self._reading: EnergyReading | None = None

    @property
    def reading(self) -> EnergyReading:
        if self._reading is None:
            raise RuntimeError("the measurement is still running; read it after the with block")
        return self._reading


@runtime_checkable
class EnergyMeter(Protocol):
    """Measures the energy used between ``start`` and ``stop`` (or between laps)."""

    @property
    def source(self) -> EnergySource:
        """The source this meter reads; a reading says ``estimate`` if it had to fall back."""
        ...

    @property
    def detail(self) -> str:
        """What this meter measures, or why it estimates."""
        ...

    def start(self) -> None: ...

    def stop(self) -> EnergyReading: ...

    def lap(self) -> EnergyReading:
        """The reading since ``start`` or the previous lap; the meter keeps running."""
        ...

    def measure(self) -> AbstractContextManager[Measurement]:
        """``with meter.measure() as m: ...`` then ``m.reading``."""
        ...


@dataclass(frozen=True)
class _Sample:
    """One look at the clock and the counter; ``error`` says why the counter could not be read."""

    t: float
    joules: float | None = None
    error: str | None = None


class _Meter(ABC):
    """Start/stop/lap/measure on top of ``_sample`` and ``_between``, shared by all meters."""

    source: EnergySource

    def __init__(self) -> None:
        self._last: _Sample | None = None

    @property
    @abstractmethod
    def detail(self) -> str: ...

    @abstractmethod
    def _sample(self) -> _Sample: ...

    @abstractmethod
    def _between(self, first: _Sample, last: _Sample) -> EnergyReading: ...

    def start(self) -> None:
        self._last = self._sample()

    def stop(self) -> EnergyReading:
        reading = self.lap()
        self._last = None
        return reading

    def lap(self) -> EnergyReading:
        if self._last is None:
            raise RuntimeError(f"{type(self).__name__} was not started; call start() first")
        now = self._sample()
        reading = self._between(self._last, now)
        self._last = now
        return reading

    @contextmanager
    def measure(self) -> Iterator[Measurement]:
        """``with meter.measure() as m: ...``; ``m.reading`` is set even if the block raises."""
        measurement = Measurement()
        self.start()
        try:
            yield measurement
        finally:
            measurement._reading = self.stop()


def _estimate(watts: float, seconds: float, why: str) -> EnergyReading:
    return EnergyReading(
        joules=watts * seconds,
        seconds=seconds,
        source=EnergySource.ESTIMATE,
        detail=f"estimate: {watts:.1f} W x {seconds:.3f} s; {why}",
    )


class EstimateMeter(_Meter):
    """Elapsed time x a configured power: the last resort, always labelled as an estimate."""

    source = EnergySource.ESTIMATE

    def __init__(self, watts: float, *, note: str = "estimate requested") -> None:
        super().__init__()
        self.watts = _watts("watts", watts)
        self.note = note

    @property
    def detail(self) -> str:
        return f"estimate at {self.watts:.1f} W; {self.note}"

    def _sample(self) -> _Sample:
        return _Sample(t=time.perf_counter())

    def _between(self, first: _Sample, last: _Sample) -> EnergyReading:
        return _estimate(self.watts, last.t - first.t, self.note)


class _CounterMeter(_Meter):
    """A meter over a cumulative hardware counter, falling back to an estimate per reading.

    A counter that goes backwards (wrapped or reset) or fails mid-run gives no usable difference;
    that one reading becomes an estimate at ``fallback_watts`` with the reason in its detail. With
    no ``fallback_watts`` there is no honest figure to give, so ``EnergySourceUnavailableError``.
    """

    #: Names the counter in details, e.g. "NVML counter of GPU 0"; set by subclasses.
    _counter: str

    def __init__(self, fallback_watts: float | None) -> None:
        super().__init__()
        self.fallback_watts = (
            None if fallback_watts is None else _watts("fallback_watts", fallback_watts)
        )

    @abstractmethod
    def _read_joules(self) -> float:
        """The counter now, in joules; raises ``OSError``/``ValueError``/the library's error."""

    @abstractmethod
    def _read_errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions ``_read_joules`` raises when the counter cannot be read."""

    def _sample(self) -> _Sample:
        t = time.perf_counter()
        try:
            return _Sample(t=t, joules=self._read_joules())
        except self._read_errors() as e:
            return _Sample(t=t, error=f"{self._counter} could not be read: {e}")

    def _between(self, first: _Sample, last: _Sample) -> EnergyReading:
        seconds = last.t - first.t
        if first.joules is not None and last.joules is not None:
            if last.joules >= first.joules:
                return EnergyReading(
                    joules=last.joules - first.joules,
                    seconds=seconds,
                    source=self.source,
                    detail=self.detail,
                )
            why = (
                f"{self._counter} went backwards ({first.joules:.3f} J -> {last.joules:.3f} J;"
                " wrapped or reset)"
            )
        else:
            why = str(first.error or last.error)
        if self.fallback_watts is None:
            raise EnergySourceUnavailableError(self.source, f"{why}; no fallback power configured")
        logger.warning("energy reading falls back to an estimate: %s", why)
        return _estimate(self.fallback_watts, seconds, why)


class NvmlMeter(_CounterMeter):
    """The GPU's total-energy counter through NVML (``nvmlDeviceGetTotalEnergyConsumption``).

    The figure is the whole GPU board's energy: not the CPU or DRAM, and including any other
    process on that GPU. ``device_index`` is NVML's index, which ignores ``CUDA_VISIBLE_DEVICES``;
    ``make_meter`` maps a ``cuda:N`` device to it. Building the meter probes the counter once and
    raises ``EnergySourceUnavailableError`` with the reason when it cannot be read.
    """

    source = EnergySource.NVML

    def __init__(
        self,
        device_index: int = 0,
        *,
        uuid: str | None = None,
        fallback_watts: float | None = None,
    ) -> None:
        super().__init__(fallback_watts)
        self.device_index = device_index
        self.uuid = uuid
        gpu = f"GPU {uuid}" if uuid is not None else f"GPU {device_index}"
        self._counter = f"NVML total-energy counter of {gpu}"
        try:
            import pynvml
        except ImportError as e:
            raise EnergySourceUnavailableError(
                self.source, f"nvidia-ml-py (pynvml) is not installed: {e}"
            ) from e
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise EnergySourceUnavailableError(self.source, f"nvmlInit failed: {e}") from e
        try:
            if uuid is not None:
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self._read_joules()
        except pynvml.NVMLError as e:
            self._shutdown()
            raise EnergySourceUnavailableError(
                self.source, f"no total-energy counter for {gpu}: {e}"
            ) from e

    def _shutdown(self) -> None:
        """Balance the probe's ``nvmlInit``; a failure here changes nothing for the reading."""
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as e:
            logger.debug("nvmlShutdown after a failed probe failed: %s", e)

    @property
    def detail(self) -> str:
        return f"{self._counter}: GPU energy only (no CPU or DRAM)"

    def _read_joules(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) / _MJ_PER_J

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        return (self._nvml.NVMLError,)


class RaplMeter(_CounterMeter):
    """CPU package and DRAM energy from the RAPL counters, through pyJoules.

    Every socket's package domain is summed with its DRAM domain where the CPU has one (many AMD
    CPUs have none); GPU energy is not included. Building the meter probes the counters once and
    raises ``EnergySourceUnavailableError`` when there is no powercap interface, no package domain,
    or the counters are not readable (they are root-only on recent kernels).
    """

    source = EnergySource.RAPL

    def __init__(self, *, fallback_watts: float | None = None) -> None:
        super().__init__(fallback_watts)
        try:
            from pyJoules.device.rapl_device import RaplDevice
            from pyJoules.exception import PyJoulesException
        except ImportError as e:
            raise EnergySourceUnavailableError(
                self.source, f"pyJoules is not installed: {e}"
            ) from e
        try:
            packages = RaplDevice.available_package_domains()
            drams = RaplDevice.available_dram_domains()
        except OSError as e:
            raise EnergySourceUnavailableError(
                self.source, f"RAPL powercap tree not readable: {e}"
            ) from e
        if not packages and not os.path.isdir(_rapl_dir()):
            raise EnergySourceUnavailableError(
                self.source, f"no powercap interface at {_rapl_dir()} (absent or not visible here)"
            )
        if not packages:
            raise EnergySourceUnavailableError(
                self.source, f"no RAPL package domain under {_rapl_dir()}"
            )
        domains = [*packages, *drams]
        try:
            device = RaplDevice()
            device.configure(domains=domains)
            # pyJoules 0.5.1's get_energy() opens each counter file and never closes it (a
            # ResourceWarning per read), so pyJoules finds the files and they are read here.
            self._files = [Path(name) for name in device._api_file_names]
            self._read_joules()
        except (PyJoulesException, OSError, ValueError, AttributeError, TypeError) as e:
            raise EnergySourceUnavailableError(
                self.source, f"RAPL counters not readable: {type(e).__name__}: {e}"
            ) from e
        self._counter = "RAPL " + " + ".join(str(d).replace("_", "-") for d in domains)

    @property
    def detail(self) -> str:
        return f"{self._counter}: CPU package and DRAM only (no GPU)"

    def _read_joules(self) -> float:
        return sum(float(path.read_text(encoding="ascii")) for path in self._files) / _UJ_PER_J

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        return (OSError, ValueError)


def _rapl_dir() -> str:
    from pyJoules.device import rapl_device

    return str(rapl_device.RAPL_API_DIR)


def _cuda_index(device: str) -> int | None:
    """``cuda:N`` -> N, ``cuda`` -> 0, ``cpu`` -> None."""
    name = device.strip().lower()
    if name == "cpu":
        return None
    if name == "cuda":
        return 0
    if name.startswith("cuda:") and name[5:].isdigit():
        return int(name[5:])
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _nvml_meter(cuda_index: int, fallback_watts: float) -> NvmlMeter:
    """The NVML meter of the GPU that CUDA calls ``cuda:N``, through ``CUDA_VISIBLE_DEVICES``.

    This assumes CUDA numbers GPUs as NVML does (PCI bus order), true for identical GPUs or with
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return NvmlMeter(cuda_index, fallback_watts=fallback_watts)
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if cuda_index >= len(entries):
        raise EnergySourceUnavailableError(
            EnergySource.NVML, f"cuda:{cuda_index} is not in CUDA_VISIBLE_DEVICES={visible!r}"
        )
    entry = entries[cuda_index]
    if entry.isdigit():
        return NvmlMeter(int(entry), fallback_watts=fallback_watts)
    if entry.startswith(("GPU-", "MIG-")):
        return NvmlMeter(cuda_index, uuid=entry, fallback_watts=fallback_watts)
    raise EnergySourceUnavailableError(
        EnergySource.NVML, f"cannot map CUDA_VISIBLE_DEVICES entry {entry!r} to an NVML device"
    )


def _open(source: EnergySource, device: str, cuda_index: int | None, watts: float) -> EnergyMeter:
    if source is EnergySource.RAPL:
        return RaplMeter(fallback_watts=watts)
    if cuda_index is None:
        raise EnergySourceUnavailableError(source, f"device is {device!r}, not a GPU")
    return _nvml_meter(cuda_index, watts)


def make_meter(
    device: str,
    estimate_watts: float,
    *,
    prefer: Sequence[EnergySource] | None = None,
) -> EnergyMeter:
    """The best meter available for ``device`` (``cpu``, ``cuda`` or ``cuda:N``); never fails on
    a missing counter.

    The default order is NVML, RAPL, estimate for a GPU and RAPL, estimate for the CPU; ``prefer``
    replaces it (an estimate at ``estimate_watts`` always ends the list). Each source that cannot
    measure is skipped with its reason, logged at debug level and kept in the estimate's detail.
    ``estimate_watts`` is also what a measured reading falls back to when its counter wraps.
    """
    watts = _watts("estimate_watts", estimate_watts)
    cuda_index = _cuda_index(device)
    if prefer is None:
        gpu = cuda_index is not None
        order = [EnergySource.NVML, EnergySource.RAPL] if gpu else [EnergySource.RAPL]
    else:
        order = [EnergySource(s) for s in prefer]  # accepts "rapl" as well as RAPL
    reasons: list[str] = []
    for source in order:
        if source is EnergySource.ESTIMATE:
            break
        try:
            return _open(source, device, cuda_index, watts)
        except EnergySourceUnavailableError as e:
            logger.debug("energy source %s skipped for %s: %s", source.value, device, e.reason)
            reasons.append(f"no {_LABEL[source]} ({e.reason})")
    return EstimateMeter(watts, note=", ".join(reasons) or "estimate preferred")
