"""The handover between the candidate's process and the measuring process: a program, not code.

The candidate's process exports its trained network with ``torch.export`` and writes two files:
``program.json``, the computation as a straight-line list of ATen operator calls, and
``program.safetensors``, every tensor the computation reads (parameters, buffers, constants). The
measuring process rebuilds a ``torch.fx.GraphModule`` from them without importing the candidate's
module and without unpickling anything.

Why not torch's own ``.pt2`` archive: ``torch.export.load`` unpickles (its docstring says never to
load untrusted files), its JSON deserializer resolves operator names with ``getattr`` on the
``torch`` module (a forged file could name ``torch.os.system``), and it parses symbolic shapes with
sympy. This format is small enough to check completely.

What a loaded program can do is only what its operators do. The loader accepts the ATen operators
of an allowlist (``archsmith.scoring.allowed_ops``: functional and deterministic ones, never a
random, uninitialised or training-mode one, whatever their schemas say), ``getitem``, and integer
arithmetic on sizes. So a program has no state (the same batch gives the same output on every
call, however often it is measured), no control flow, no I/O and no Python of its own. Node and
attribute names are the loader's; every device in the program becomes the measuring device.

This module runs inside the sandbox: it imports only the standard library, torch and safetensors.
"""

from __future__ import annotations

import inspect
import json
import math
import operator
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from archsmith.files import written_in_place
from archsmith.scoring.allowed_ops import check_call, check_operator
from archsmith.scoring.format import (
    FORMAT,
    IDENTIFIER,
    MAX_PROGRAM_BYTES,
    PROGRAM_FILE,
    TENSORS_FILE,
    VERSION,
    ProgramError,
    check_program,
    read_program,
    read_regular_file,
)

__all__ = [
    "FORMAT",
    "MAX_BATCH",
    "PROGRAM_FILE",
    "TENSORS_FILE",
    "VERSION",
    "ProgramError",
    "export_program",
    "load_program",
    "read_regular_file",
    "refill_program",
    "resolve_operator",
]

#: The largest batch a program is exported for (the symbolic batch dimension's upper bound).
MAX_BATCH = 1 << 16
#: Operators refused whatever their schema says: they read or write files.
DENIED_OPERATORS = frozenset({"from_file", "_print", "save", "load"})
#: Argument types that no measured computation needs and that reach outside the tensor world.
_DENIED_TYPES = ("Storage", "Stream", "Capsule", "ScriptObject", "Any", "AnyEnumType", "Event")

#: Python functions an exported graph uses on sizes and tuples, by the name the format gives them.
_PY_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "getitem": operator.getitem,
    **{
        f"operator.{name}": getattr(operator, name)
        for name in (
            "add",
            "sub",
            "mul",
            "floordiv",
            "truediv",
            "mod",
            "pow",
            "neg",
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
        )
    },
    **{
        f"torch.{name}": getattr(torch, name)
        for name in ("sym_float", "sym_int", "sym_max", "sym_min", "sym_not", "sym_ite")
        if hasattr(torch, name)
    },
}
_PY_NAMES = {fn: name for name, fn in _PY_FUNCTIONS.items()}


# -- operators -------------------------------------------------------------------------------------


def _operator_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        name = f"{target.namespace}.{target._opname}.{target._overloadname}"
        resolve_operator(name)  # an export fails with the loader's own reason
        return name
    known = _PY_NAMES.get(target)
    if known is None:
        shown = str(getattr(target, "__name__", None) or type(target).__name__)
        raise ProgramError(
            f"the exported graph calls {shown}, which a measured program may not call: only ATen"
            " operators, getitem and arithmetic on sizes are allowed (no torch.cond or other"
            " control flow, no custom operators)"
        )
    return known


def resolve_operator(name: str) -> Callable[..., Any]:
    """The callable behind an operator name of the format, if the format allows it.

    Raises ProgramError saying why a name is refused: not ATen, unknown, reads or writes files,
    not on the allowlist of ``archsmith.scoring.allowed_ops`` (random, uninitialised, training-mode
    and in-place operators among them, each with its own reason), or takes an argument type that
    reaches outside tensors.
    """
    if name in _PY_FUNCTIONS:
        return _PY_FUNCTIONS[name]
    parts = name.split(".")
    if len(parts) != 3 or not all(IDENTIFIER.match(p) for p in parts):
        raise ProgramError(f"operator {name[:80]!r} is not of the form aten.NAME.OVERLOAD")
    namespace, opname, overload = parts
    if namespace != "aten":
        raise ProgramError(
            f"operator {name} is not an ATen operator; custom and higher-order operators"
            " (torch.cond, torch.while_loop) cannot be measured"
        )
    if opname in DENIED_OPERATORS:
        raise ProgramError(f"operator {name} reads or writes files")
    try:
        packet = getattr(torch.ops.aten, opname)
    except (AttributeError, RuntimeError) as e:
        raise ProgramError(f"operator {name} does not exist in this torch") from e
    if not isinstance(packet, torch._ops.OpOverloadPacket) or overload not in list(
        packet.overloads()  # type: ignore[no-untyped-call]
    ):
        raise ProgramError(f"operator {name} does not exist in this torch")
    op = getattr(packet, overload)
    if not isinstance(op, torch._ops.OpOverload):  # pragma: no cover - torch guarantees it
        raise ProgramError(f"operator {name} is not an operator overload")
    check_operator(name, op)
    for arg in op._schema.arguments:
        if any(t in str(arg.type) for t in _DENIED_TYPES):
            raise ProgramError(f"operator {name} takes a {arg.type} argument, which is refused")
    return op


# -- values ----------------------------------------------------------------------------------------


def _encode(value: Any, refs: dict[fx.Node, Any]) -> Any:
    """An argument of a graph node as JSON; tensors and other nodes become references."""
    if isinstance(value, fx.Node):
        if value not in refs:
            raise ProgramError(f"the exported graph uses {value.name} before defining it")
        return refs[value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, list | tuple):
        return {"list": [_encode(v, refs) for v in value]}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, torch.layout):
        return {"layout": str(value).removeprefix("torch.")}
    if isinstance(value, torch.memory_format):
        return {"memory_format": str(value).removeprefix("torch.")}
    raise ProgramError(
        f"the exported graph passes a {type(value).__name__} to an operator, which the program"
        " format cannot hold"
    )


class _Decoder:
    """Turns the JSON arguments of a program back into values, checking every one."""

    def __init__(self, graph: fx.Graph, inputs: fx.Node, tensors: dict[str, str], device: str):
        self.graph = graph
        self.inputs = inputs
        self.attrs = tensors
        self.device = torch.device(device)
        self.nodes: list[fx.Node] = []
        self._got: dict[str, fx.Node] = {}

    def tensor(self, name: Any) -> fx.Node:
        if not isinstance(name, str) or name not in self.attrs:
            raise ProgramError(f"the program reads a tensor {str(name)[:80]!r} it does not hold")
        if name not in self._got:
            self._got[name] = self.graph.get_attr(self.attrs[name])
        return self._got[name]

    def value(self, data: Any, depth: int = 0) -> Any:
        if depth > 8:
            raise ProgramError("the program nests arguments too deeply")
        if data is None or isinstance(data, bool | int | str):
            return data
        if isinstance(data, float):
            if not math.isfinite(data):
                raise ProgramError("a float argument is not finite")
            return data
        if isinstance(data, dict) and len(data) == 1:
            ((tag, inner),) = data.items()
            return self._tagged(tag, inner, depth)
        raise ProgramError(f"an argument of the program is malformed: {str(data)[:80]}")

    def _tagged(self, tag: str, inner: Any, depth: int) -> Any:
        if tag == "list" and isinstance(inner, list):
            return [self.value(v, depth + 1) for v in inner]
        if tag == "node" and isinstance(inner, int) and not isinstance(inner, bool):
            if not 0 <= inner < len(self.nodes):
                raise ProgramError(f"the program uses node {inner} before defining it")
            return self.nodes[inner]
        if tag == "input" and inner == 0:
            return self.inputs
        if tag == "tensor":
            return self.tensor(inner)
        if tag == "float" and inner in ("inf", "-inf", "nan"):
            return float(inner)
        if tag in ("dtype", "layout", "memory_format") and isinstance(inner, str):
            kind = {"dtype": torch.dtype, "layout": torch.layout}.get(tag, torch.memory_format)
            found = getattr(torch, inner, None) if IDENTIFIER.match(inner) else None
            if not isinstance(found, kind):
                raise ProgramError(f"{inner[:40]!r} is not a torch {tag}")
            return found
        if tag == "device" and isinstance(inner, str):
            try:
                torch.device(inner)
            except (RuntimeError, TypeError) as e:
                raise ProgramError(f"{inner[:40]!r} is not a device") from e
            # A program exported on one device runs on the measuring device.
            return self.device
        raise ProgramError(f"an argument of the program has an unknown tag {tag[:40]!r}")


# -- export ----------------------------------------------------------------------------------------


def export_program(model: nn.Module, example: torch.Tensor, out_dir: Path) -> dict[str, Any]:
    """Export ``model`` (eval mode, on the CPU) for any batch size and write the program's files.

    ``example`` is a batch of at least two samples: a batch of one would fix the batch dimension.
    Raises ProgramError, with torch's reason, when the model cannot be exported.
    """
    from torch.export import Dim

    started = time.perf_counter()
    if example.shape[0] < 2:
        raise ProgramError("the example batch must hold at least two samples")
    model = model.to("cpu").eval()
    batch = Dim("batch", min=1, max=MAX_BATCH)
    try:
        exported = _functional_export(model, example.cpu(), batch)
    except Exception as e:  # any failure of torch.export is the model's, and reported
        raise ProgramError(_export_reason(e)) from e
    program, tensors = _encode_exported(exported, example)
    _write_program(out_dir, program, tensors)
    return {
        "nodes": len(program["nodes"]),
        "tensors": len(tensors),
        "export_seconds": time.perf_counter() - started,
    }


def _functional_export(model: nn.Module, example: torch.Tensor, batch: Any) -> Any:
    """The model as functional ATen (in-place updates of intermediates, such as
    ``ReLU(inplace=True)``, become ordinary operators, so the loader can refuse every operator
    that mutates), traced once.

    torch's public path traces a training graph, then ``run_decompositions({})`` overrides every
    composite operator's kernel and traces again: 1.33 s against 0.87 s for the README's example
    CNN (``benchmarks/export_paths.py``: 3x64x64, median of 6 forked children of a warmed
    process, as a warm sandbox's jobs are). ``_export(pre_dispatch=False)`` is
    torch's own one-trace path to the same IR; a torch without it takes the public path.
    """
    from torch.export import export

    shapes = ({0: batch},)
    one_trace = _one_trace_export()
    if one_trace is not None:
        return one_trace(model, (example,), dynamic_shapes=shapes, strict=False, pre_dispatch=False)
    return export(model, (example,), dynamic_shapes=shapes, strict=False).run_decompositions({})


def _one_trace_export() -> Callable[..., Any] | None:
    """torch's ``_export`` where it takes ``pre_dispatch`` (2.4 to at least 2.14), else None."""
    from torch.export import _trace

    found = getattr(_trace, "_export", None)
    if callable(found) and "pre_dispatch" in inspect.signature(found).parameters:
        return found  # type: ignore[no-any-return]
    return None


def refill_program(
    model: nn.Module, program_file: Path, tensors_file: Path, out_dir: Path
) -> dict[str, Any]:
    """Write the program in ``program_file`` again, with ``model``'s parameters and buffers now.

    For a training job given the candidate's validated program: training changes the tensors,
    not the computation, so the graph exported before training holds, and this costs a file
    write instead of a second export. Constants keep their validated values. Raises ProgramError
    when the model's tensors do not fit the program (a name missing, another shape or dtype);
    whether the refilled program computes what the model computes is the caller's check.
    """
    import safetensors.torch

    started = time.perf_counter()
    raw = read_regular_file(program_file, MAX_PROGRAM_BYTES)
    try:
        program = check_program(json.loads(raw.decode("utf-8")))
        before = safetensors.torch.load_file(str(tensors_file))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProgramError(f"the validated program cannot be read: {e}") from e
    current: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    current.update(model.named_buffers(remove_duplicate=False))
    tensors: dict[str, torch.Tensor] = {}
    for name, kind in program["tensors"].items():
        old = before.get(name)
        new = old if kind == "constant" else current.get(name)
        if old is None or new is None:
            raise ProgramError(f"the model has no tensor {name[:80]!r} of the validated program")
        if new.shape != old.shape or new.dtype != old.dtype:
            raise ProgramError(
                f"the model's {name[:80]} is {new.dtype} {list(new.shape)}, the validated"
                f" program's {old.dtype} {list(old.shape)}"
            )
        tensors[name] = new.detach().to("cpu").contiguous().clone()
    _write_program(out_dir, program, tensors)
    return {
        "nodes": len(program["nodes"]),
        "tensors": len(tensors),
        "export_seconds": time.perf_counter() - started,
        "refilled": True,
    }


def _export_reason(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:600]
    return (
        f"torch.export cannot export the model ({type(e).__name__}: {first}). archsmith measures"
        " the exported program, never the candidate's code, so the model must be exportable: no"
        " Python branches or loops on tensor values, no .item(), .tolist() or .numpy() in forward,"
        " no batch size written into view/reshape (use x.flatten(1) or x.view(x.size(0), -1))"
    )


def _encode_exported(
    exported: Any, example: torch.Tensor
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The program's JSON and its tensors, from an ExportedProgram's lifted graph."""
    from torch.export.graph_signature import InputKind, OutputKind

    signature = exported.graph_signature
    placeholders = [n for n in exported.graph.nodes if n.op == "placeholder"]
    refs: dict[fx.Node, Any] = {}
    kinds: dict[str, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    user_inputs = 0
    state = exported.state_dict
    constants = exported.constants
    for node, spec in zip(placeholders, signature.input_specs, strict=True):
        if spec.kind is InputKind.USER_INPUT:
            user_inputs += 1
            refs[node] = {"input": 0}
            continue
        if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            raise ProgramError(f"the exported graph has an input of kind {spec.kind.name}")
        name = str(spec.target)
        value = state[name] if name in state else constants.get(name)
        if not isinstance(value, torch.Tensor):
            raise ProgramError(f"the exported graph reads {name}, which is not a tensor")
        kind = {InputKind.PARAMETER: "parameter", InputKind.BUFFER: "buffer"}.get(
            spec.kind, "constant"
        )
        # Tied weights (one tensor under two names) are stored and counted once.
        key = (value.untyped_storage().data_ptr(), int(value.storage_offset()), tuple(value.shape))
        first = seen.setdefault(key, name)
        if first != name and tensors[first].shape == value.shape:
            aliases[name] = first
        else:
            kinds[name] = kind
            tensors[name] = value.detach().to("cpu").contiguous().clone()
        refs[node] = {"tensor": aliases.get(name, name)}
    if user_inputs != 1:
        raise ProgramError(f"the exported graph takes {user_inputs} inputs; it must take one")
    if [s.kind for s in signature.output_specs] != [OutputKind.USER_OUTPUT]:
        raise ProgramError(
            "the exported graph does more than return one output (it updates a buffer in"
            " forward); a measured program must have no state"
        )
    nodes: list[dict[str, Any]] = []
    output: Any = None
    for node in exported.graph.nodes:
        if node.op == "call_function":
            name = _operator_name(node.target)
            check_call(name, node.target, node.args, node.kwargs)
            nodes.append(
                {
                    "op": name,
                    "args": [_encode(a, refs) for a in node.args],
                    "kwargs": {k: _encode(v, refs) for k, v in node.kwargs.items()},
                }
            )
            refs[node] = {"node": len(nodes) - 1}
        elif node.op == "output":
            (outputs,) = node.args
            if not isinstance(outputs, list | tuple) or len(outputs) != 1:
                raise ProgramError("the exported graph must return exactly one tensor")
            output = _encode(outputs[0], refs)
        elif node.op != "placeholder":
            raise ProgramError(f"the exported graph has a {node.op} node, which is not allowed")
    program = {
        "format": FORMAT,
        "version": VERSION,
        "torch": torch.__version__,
        "input": {
            "dtype": str(example.dtype).removeprefix("torch."),
            "shape": [None, *(int(d) for d in example.shape[1:])],
        },
        "tensors": kinds,
        "aliases": aliases,
        "nodes": nodes,
        "output": output,
    }
    return program, tensors


def _write_program(
    out_dir: Path, program: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    import safetensors.torch

    out_dir.mkdir(parents=True, exist_ok=True)
    # Written in place: in a sandbox these are files the host lent the job, which stay its own.
    (out_dir / PROGRAM_FILE).write_text(json.dumps(program, allow_nan=False), encoding="utf-8")
    with written_in_place(out_dir / TENSORS_FILE) as path:
        safetensors.torch.save_file(tensors, str(path), metadata={"format": FORMAT})


# -- load ------------------------------------------------------------------------------------------


def load_program(
    directory: Path, device: str = "cpu", *, max_tensor_bytes: int = 8 << 30
) -> tuple[fx.GraphModule, dict[str, Any]]:
    """Rebuild the program in ``directory`` as a GraphModule on ``device``, checking everything.

    Returns the module (eval mode, its tensors as buffers) and the program's JSON with ``params``
    (the numbers in all its tensors, tied ones once) and ``size_bytes`` (their bytes) added.
    Raises ProgramError for anything that is not a valid program.
    """
    import safetensors.torch

    _, data = read_program(directory)
    raw = read_regular_file(directory / TENSORS_FILE, max_tensor_bytes)
    try:
        loaded = safetensors.torch.load(raw)
    except Exception as e:  # any parse failure means a damaged or forged file
        raise ProgramError(f"program.safetensors cannot be read: {e}") from e
    del raw
    names: dict[str, str] = data["tensors"]
    if set(loaded) != set(names):
        missing = sorted(set(names) - set(loaded))[:5]
        extra = sorted(set(loaded) - set(names))[:5]
        raise ProgramError(
            f"program.safetensors does not hold the program's tensors (missing {missing},"
            f" unexpected {extra})"
        )
    # Every number the program carries counts, whatever export calls it (parameter, buffer or
    # lifted constant) and whatever its dtype: weights kept as buffers or as plain tensor
    # attributes are weights all the same, and max_params must see them (``take_program``, the
    # host's count from the header, is the same sum).
    params = sum(t.numel() for t in loaded.values())
    size = sum(t.numel() * t.element_size() for t in loaded.values())
    root = nn.Module()
    attrs: dict[str, str] = {}
    for i, name in enumerate(sorted(names)):
        attrs[name] = f"t{i}"
        root.register_buffer(f"t{i}", loaded[name].to(device))
    graph = fx.Graph()
    decoder = _Decoder(graph, graph.placeholder("x"), attrs, device)
    for i, node in enumerate(data["nodes"]):
        if not isinstance(node, dict) or set(node) != {"op", "args", "kwargs"}:
            raise ProgramError(f"node {i} of the program is malformed")
        op, args, kwargs = node["op"], node["args"], node["kwargs"]
        if not isinstance(op, str) or not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ProgramError(f"node {i} of the program is malformed")
        if not all(isinstance(k, str) and IDENTIFIER.match(k) for k in kwargs):
            raise ProgramError(f"node {i} of the program has a malformed keyword")
        target = resolve_operator(op)
        decoded_args = tuple(decoder.value(a) for a in args)
        decoded_kwargs = {k: decoder.value(v) for k, v in kwargs.items()}
        check_call(op, target, decoded_args, decoded_kwargs)
        decoder.nodes.append(graph.call_function(target, decoded_args, decoded_kwargs))
    output = decoder.value(data.get("output"))
    if not isinstance(output, fx.Node):
        raise ProgramError("the program's output is not a tensor of the computation")
    graph.output(output)
    module = fx.GraphModule(root, graph, class_name="Program")
    return module.eval(), {**data, "params": params, "size_bytes": size}
