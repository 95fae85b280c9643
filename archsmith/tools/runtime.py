"""What the sandboxed tools share: the sandbox, the settings, where jobs, models and data live.

A tool call prepares the dataset on the host (once, cached), sends jobs to the sandbox and turns
their results into the tool's typed output. Candidate failures come back as ``ToolError``; failures
of archsmith itself (no sandbox, a dataset that is not there) raise.

The sealed scoreboard (``archsmith.scoring``): a candidate job gets the candidate's code and the
training split only; the program it exports is checked and copied by the host into ``models/``, a
directory no job can write; measuring jobs get copies of those files and the full dataset, never
the code. Every job has a new work directory, removed when the job is done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from langchain_core.tools import StructuredTool
from pydantic import BaseModel

from archsmith.config import Settings, resolve_device
from archsmith.data.prepared_format import read_meta
from archsmith.files import UntrustedFileError, copy_untrusted, remove_untrusted_tree
from archsmith.home import new_job_dir, new_validated_dir, release_run
from archsmith.memory.store import ToolCallRecord
from archsmith.sandbox.base import (
    CANDIDATE_TOOLS,
    CandidateError,
    Sandbox,
    SandboxJob,
    SandboxLimits,
    SandboxResult,
    ToolName,
)
from archsmith.sandbox.bounds import bound_candidate_result
from archsmith.scoring.format import ProgramError
from archsmith.scoring.handover import ProgramFiles, take_program
from archsmith.tools.schemas import CandidateInput, ToolError

__all__ = [
    "JOB_TRACE",
    "JobTrace",
    "PreparedRef",
    "ToolRuntime",
    "Validation",
    "bind_tool",
    "remove_tree",
    "tool_error",
]

JobKind = Literal["validate", "train", "measure", "export"]

log = logging.getLogger(__name__)

_In = TypeVar("_In", bound=BaseModel)


@dataclass
class JobTrace:
    """The jobs one candidate ran. Candidates evaluated in parallel share one runtime; a node
    that sets a trace in `JOB_TRACE` gets its own jobs (where and when they ran), and their tool
    calls are recorded under its iteration."""

    iteration: int
    jobs: list[dict[str, Any]] = field(default_factory=list)


JOB_TRACE: ContextVar[JobTrace | None] = ContextVar("archsmith_job_trace", default=None)


class PreparedRef:
    """A prepared dataset file and the facts about it the tools check arguments against."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta

    @property
    def input_shape(self) -> list[int]:
        return [int(d) for d in self.meta["input_shape"]]

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])


def tool_error(result: SandboxResult) -> ToolError | None:
    """The candidate's error in the tools' shape, or None when the job succeeded."""
    if result.ok or result.error is None:
        return None
    return ToolError(type=result.error.type, message=result.error.message, line=result.error.line)


@dataclass(frozen=True)
class Validation:
    """What validating a candidate found: the build job, the inspection of its program."""

    build: SandboxResult
    inspect: SandboxResult | None
    program: ProgramFiles | None


class ToolRuntime:
    """Runs tool jobs in one sandbox with one set of settings."""

    def __init__(
        self,
        sandbox: Sandbox,
        settings: Settings | None = None,
        *,
        device: str = "auto",
        data_dir: Path | str | None = None,
        limits: SandboxLimits | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.settings = settings or Settings()
        self.device = resolve_device(device)
        #: Where datasets' files are (the run's ``data_dir``); None: ``ARCHSMITH_DATA_DIR``.
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.limits = limits or SandboxLimits(
            wall_time_s=self.settings.job_wall_time_s, memory_mb=self.settings.job_memory_mb
        )
        #: Called after every job with what a trace needs (the run store records it).
        self.on_call: Callable[[ToolCallRecord], None] | None = None
        self._validated: OrderedDict[str, Validation] = OrderedDict()
        # Candidates of one round are validated from several threads at once.
        self._validated_lock = threading.Lock()
        self._expected: PreparedRef | None = None
        self._validated_dir: Path | None = None

    def validated_dir(self) -> Path:
        """Where this runtime keeps the programs it validates (``home.new_validated_dir``):
        untrained, read only until their candidate trains; made on first use."""
        with self._validated_lock:
            if self._validated_dir is None:
                self._validated_dir = new_validated_dir(self.settings.home)
            return self._validated_dir

    def release(self) -> None:
        """The run has ended: remove the programs it validated (a resumed run validates again)."""
        with self._validated_lock:
            found, self._validated_dir = self._validated_dir, None
            self._validated.clear()
        if found is not None:
            release_run(found)

    def expect_data(self, data: PreparedRef) -> None:
        """Say which prepared dataset the next candidates train on and are scored with.

        Only where jobs run changes, not what they compute: a warm sandbox is fixed at its start
        to the data it may read, and a validation job reads none. Told this, the build job
        starts the candidate's sandbox with the training view and the inspection starts the
        measuring sandbox with the dataset, so the training and scoring that follow reuse them
        instead of each starting another (about 6 s apiece here).
        """
        self._expected = data

    def prepare(
        self,
        dataset: str,
        *,
        seed: int = 0,
        max_train: int | None = None,
        max_val: int | None = None,
    ) -> PreparedRef:
        """Prepare (or reuse) the dataset's .npz on the host; raises when it is not available."""
        from archsmith.data.prepared import prepare_dataset

        path = prepare_dataset(
            dataset,
            self.data_dir,
            self.settings.cache_dir,
            seed=seed,
            max_train=max_train,
            max_val=max_val,
        )
        return PreparedRef(path, read_meta(path))

    def training_view(self, data: PreparedRef) -> PreparedRef:
        """The candidate's copy of a prepared dataset: its training split and nothing else."""
        from archsmith.data.prepared import train_view

        path = train_view(data.path)
        return PreparedRef(path, read_meta(path))

    def limits_for(self, kind: JobKind, time_budget_s: float | None = None) -> SandboxLimits:
        """Wall-clock limits that fit the job: short for validation, the budget for training.

        A training job with a time budget stops itself after its step past the budget; the limit
        adds the slack for starting, exporting and that last step. Without one, training,
        measuring and exporting get ``job_wall_time_s``.
        """
        wall = self.limits.wall_time_s
        if kind == "validate":
            wall = min(wall, self.settings.validate_wall_time_s)
        elif kind == "train" and time_budget_s is not None:
            wall = time_budget_s + self.settings.train_slack_s
        return self.limits.model_copy(update={"wall_time_s": wall})

    def run(
        self,
        tool: ToolName,
        args: dict[str, Any],
        code: str = "",
        *,
        dataset: PreparedRef | None = None,
        input_files: dict[str, Path] | None = None,
        limits: SandboxLimits | None = None,
        after: Callable[[Path, SandboxResult], SandboxResult] | None = None,
    ) -> SandboxResult:
        """Send one job to the sandbox in a new work directory, removed afterwards.

        ``after(work_dir, result)`` runs before the removal: it may take files out of the work
        directory (with ``files.open_untrusted``, never trusting what is there) and returns the
        result to report.
        """
        return self._run(tool, args, code, dataset, input_files, limits, after)

    def run_for_program(
        self,
        tool: ToolName,
        args: dict[str, Any],
        code: str,
        *,
        dataset: PreparedRef | None = None,
        limits: SandboxLimits | None = None,
        input_files: dict[str, Path] | None = None,
        take_files: dict[str, Path] | None = None,
    ) -> tuple[SandboxResult, ProgramFiles | None]:
        """A candidate job whose exported program the host checks and keeps (``handover``).

        A job that succeeded but left no valid program becomes a failed result (``InvalidProgram``,
        with what is wrong), which goes to the code fixer like any other failure. ``take_files``
        maps names in the work directory to host paths: each such file the job left (a regular
        file, no link, at most three times ``max_model_bytes``) is copied there; one it did not
        leave is not.
        """
        kept: list[ProgramFiles] = []

        def take(work_dir: Path, result: SandboxResult) -> SandboxResult:
            if not result.ok:
                return result
            for name, dest in (take_files or {}).items():
                try:
                    copy_untrusted(work_dir / name, dest, 3 * self.settings.max_model_bytes)
                except UntrustedFileError as e:
                    log.warning("the job's %s was not taken: %s", name, e)
            try:
                kept.append(
                    take_program(
                        work_dir,
                        self.validated_dir() if tool == "build" else self.settings.models_dir,
                        max_tensor_bytes=self.settings.max_model_bytes,
                    )
                )
            except ProgramError as e:
                error = CandidateError(type="InvalidProgram", message=str(e))
                return result.model_copy(update={"ok": False, "error": error})
            return result

        result = self._run(tool, args, code, dataset, input_files, limits, take)
        return result, (kept[0] if kept else None)

    def _run(
        self,
        tool: ToolName,
        args: dict[str, Any],
        code: str,
        dataset: PreparedRef | None,
        input_files: dict[str, Path] | None,
        limits: SandboxLimits | None,
        after: Callable[[Path, SandboxResult], SandboxResult] | None,
    ) -> SandboxResult:
        job = SandboxJob(
            tool=tool,
            args={**args, "estimate_watts": self.settings.estimate_watts(self.device)},
            code=code,
            dataset_path=dataset.path if dataset is not None else None,
            input_files=input_files or {},
            limits=limits or self.limits,
            device=self.device,
        )
        work_dir = new_job_dir(self.settings.home, tool)
        started = time.time()
        try:
            result = bound_candidate_result(tool, self.sandbox.run(job, work_dir))
            if after is not None:
                result = after(work_dir, result)
        finally:
            remove_tree(work_dir)
        result = result.model_copy(update={"work_dir": None})
        trace = JOB_TRACE.get()
        if trace is not None:
            trace.jobs.append(
                {"tool": tool, "wall_time_s": result.wall_time_s, "placement": result.placement}
            )
        if self.on_call is not None:
            self.on_call(
                ToolCallRecord(
                    tool=tool,
                    args={
                        **job.args,
                        "process": "candidate" if tool in CANDIDATE_TOOLS else "measuring",
                        "code_sha256": hashlib.sha256(code.encode()).hexdigest()[:16]
                        if code
                        else None,
                        "dataset": str(job.dataset_path) if job.dataset_path else None,
                        "device": job.device,
                        **({"placement": result.placement} if result.placement else {}),
                    },
                    ok=result.ok,
                    error=result.error.model_dump(mode="json") if result.error else None,
                    result=result.result,
                    duration_s=result.wall_time_s,
                    backend=result.backend,
                    started_at=started,
                    iteration=trace.iteration if trace is not None else None,
                )
            )
        log.info(
            "%s in %s sandbox: %s in %.2f s",
            tool,
            result.backend,
            "ok" if result.ok else f"failed ({result.error.type if result.error else '?'})",
            result.wall_time_s,
        )
        return result

    def validate(self, inp: CandidateInput) -> Validation:
        """Build the candidate and inspect its exported program: one pair of jobs per candidate.

        ``check_shapes`` and ``count_params`` both read this; the last few results are kept, so
        asking both for the same code runs the jobs once.
        """
        args = inp.model_dump(exclude={"code"})
        key = _validation_key(inp)
        with self._validated_lock:
            if key in self._validated:
                self._validated.move_to_end(key)
                return self._validated[key]
        limits = self.limits_for("validate")
        data = self._expected
        view = self.training_view(data) if data is not None else None
        built, program = self.run_for_program("build", args, inp.code, limits=limits, dataset=view)
        inspected = None
        if program is not None:
            inspected = self.run(
                "inspect", args, input_files=program.paths, limits=limits, dataset=data
            )
        found = Validation(built, inspected, program)
        with self._validated_lock:
            self._validated[key] = found
            while len(self._validated) > 8:
                self._validated.popitem(last=False)
        return found

    def validation_for(self, inp: CandidateInput) -> Validation:
        """``validate`` for any tool input that names a candidate (training's, for one): the
        cached validation when its program is still on disk, else a new one."""
        candidate = CandidateInput(**inp.model_dump(include=set(CandidateInput.model_fields)))
        key = _validation_key(candidate)
        with self._validated_lock:
            found = self._validated.get(key)
            program = found.program if found is not None else None
            if program is not None and not program.directory.is_dir():
                del self._validated[key]
        return self.validate(candidate)


def _validation_key(inp: CandidateInput) -> str:
    args = inp.model_dump(exclude={"code"})
    return hashlib.sha256(json.dumps([inp.code, args], sort_keys=True).encode()).hexdigest()


def remove_tree(path: Path) -> None:
    """Remove a job's directory, whatever tree the job left (``files.remove_untrusted_tree``:
    no link followed, any depth); what could not be removed is logged, not raised."""
    remove_untrusted_tree(path)


def bind_tool(
    runtime: ToolRuntime,
    name: str,
    schema: type[_In],
    fn: Callable[[ToolRuntime, _In], BaseModel],
    description: str,
) -> StructuredTool:
    """A LangChain tool named ``name`` whose validated input runs ``fn`` on ``runtime``.

    The tool returns the output model as JSON data, so a ToolMessage carries it verbatim.
    """

    def run(**kwargs: Any) -> dict[str, Any]:
        return fn(runtime, schema(**kwargs)).model_dump(mode="json")

    return StructuredTool.from_function(
        func=run, name=name, args_schema=schema, description=description
    )
