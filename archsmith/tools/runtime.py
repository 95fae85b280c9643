"""What the sandboxed tools share: the sandbox, the settings, where jobs and datasets live.

A tool call prepares the dataset on the host (once, cached), sends one job to the sandbox and turns
the SandboxResult into the tool's typed output. Candidate failures come back as ``ToolError``;
failures of archsmith itself (no sandbox, a dataset that is not there) raise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.tools import StructuredTool
from pydantic import BaseModel

from archsmith.config import Settings
from archsmith.memory.store import ToolCallRecord
from archsmith.sandbox.base import Sandbox, SandboxJob, SandboxLimits, SandboxResult, ToolName
from archsmith.tools.schemas import ToolError

__all__ = ["PreparedRef", "ToolRuntime", "bind_tool", "read_prepared_meta", "tool_error"]

log = logging.getLogger(__name__)

_In = TypeVar("_In", bound=BaseModel)


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


def read_prepared_meta(path: Path) -> dict[str, Any]:
    """Only the ``meta`` member of a prepared .npz (the arrays stay on disk)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["meta"]))
    if not isinstance(meta, dict):
        raise TypeError(f"{path}: meta is not a JSON object")
    return meta


def tool_error(result: SandboxResult) -> ToolError | None:
    """The candidate's error in the tools' shape, or None when the job succeeded."""
    if result.ok or result.error is None:
        return None
    return ToolError(type=result.error.type, message=result.error.message, line=result.error.line)


class ToolRuntime:
    """Runs tool jobs in one sandbox with one set of settings."""

    def __init__(
        self,
        sandbox: Sandbox,
        settings: Settings | None = None,
        *,
        device: str | None = None,
        limits: SandboxLimits | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.settings = settings or Settings()
        self.device = device or self.settings.resolve_device()
        self.limits = limits or SandboxLimits(
            wall_time_s=self.settings.job_wall_time_s, memory_mb=self.settings.job_memory_mb
        )
        #: Called after every job with what a trace needs (the run store records it).
        self.on_call: Callable[[ToolCallRecord], None] | None = None

    def prepare(
        self,
        dataset: str,
        *,
        seed: int = 0,
        max_train: int | None = None,
        max_val: int | None = None,
    ) -> PreparedRef:
        """Prepare (or reuse) the dataset's .npz on the host; raises when it is not available."""
        from archsmith.data import prepare_dataset

        path = prepare_dataset(
            dataset,
            self.settings.data_dir,
            self.settings.cache_dir,
            seed=seed,
            max_train=max_train,
            max_val=max_val,
        )
        return PreparedRef(path, read_prepared_meta(path))

    def job_dir(self, tool: str) -> Path:
        """A fresh, kept work directory for a job whose files matter afterwards (weights)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.settings.jobs_dir / f"{stamp}-{tool}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True, exist_ok=False)
        return path

    def run(
        self,
        tool: ToolName,
        args: dict[str, Any],
        code: str,
        *,
        dataset: PreparedRef | None = None,
        input_files: dict[str, Path] | None = None,
        keep: bool = False,
    ) -> SandboxResult:
        """Send one job to the sandbox and log how long it took."""
        job = SandboxJob(
            tool=tool,
            args={**args, "estimate_watts": self.settings.estimate_watts(self.device)},
            code=code,
            dataset_path=dataset.path if dataset is not None else None,
            input_files=input_files or {},
            limits=self.limits,
            device=self.device,
        )
        work_dir = self.job_dir(tool) if keep else None
        started = time.time()
        result = self.sandbox.run(job, work_dir)
        if self.on_call is not None:
            self.on_call(
                ToolCallRecord(
                    tool=tool,
                    args={
                        **job.args,
                        "code_sha256": hashlib.sha256(code.encode()).hexdigest()[:16],
                        "dataset": str(job.dataset_path) if job.dataset_path else None,
                        "device": job.device,
                    },
                    ok=result.ok,
                    error=result.error.model_dump(mode="json") if result.error else None,
                    result=result.result,
                    duration_s=result.wall_time_s,
                    backend=result.backend,
                    started_at=started,
                )
            )
        log.info(
            "%s in %s sandbox: %s in %.2f s",
            tool,
            result.backend,
            "ok" if result.ok else f"failed ({result.error.type if result.error else '?'})",
            result.wall_time_s,
        )
        if work_dir is not None:
            (work_dir / "tool_result.json").write_text(
                json.dumps(result.model_dump(mode="json"), indent=1), encoding="utf-8"
            )
        return result


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
