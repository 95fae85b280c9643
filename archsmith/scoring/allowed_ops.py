"""The ATen operators a measured program may call: a list, not a reading of schema flags.

Schema flags lie by omission. ``native_batch_norm`` and ``_native_batch_norm_legit`` carry no
``(a!)`` mark, yet with training=True they write the running mean in place, under inference mode
too: a program used that buffer as a call counter, computed honestly on the scored passes and
skipped the network on the timed ones (13,382 FPS reported against 668 honest). A random operator
(``bernoulli``, ``rand_like``, ``native_dropout``) or an uninitialised one (``empty_like``) scored
the same program 0.1042 in one job and 0.1319 in the next.

So the loader accepts only the operators listed here: those ``torch.export`` emits (on both of its
paths, ``program._functional_export``'s and the public one) for the model families candidates come
from, found by exporting them (``tests/unit/model_families.py``; ``tests/unit/test_allowed_ops.py``
exports them again), and elementwise maths beside them. Each is functional (its inputs are the same
after a call) and deterministic (the same inputs give the same output): the test runs every one on
probe inputs and checks both. Random, uninitialised and training-mode operators are refused with
what to change in the model; the schema's mutability mark and argument types stay a second belt.

This module runs inside the sandbox: it imports only the standard library and torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from archsmith.scoring.format import ProgramError

__all__ = ["ALLOWED_OPERATORS", "RANDOM_ONLY_IN_TRAINING", "check_call", "check_operator"]

#: What torch.export emits for the supported families, by group (see the module's docstring).
_EMITTED = {
    # structure: shapes, views, copies, indexing, joining
    "aten.sym_size.int",
    "aten.view.default",
    "aten._unsafe_view.default",
    "aten.reshape.default",
    "aten.unsqueeze.default",
    "aten.squeeze.dim",
    "aten.squeeze.dims",
    "aten.permute.default",
    "aten.flip.default",
    "aten.transpose.int",
    "aten.t.default",
    "aten.expand.default",
    "aten.flatten.using_ints",
    "aten.slice.Tensor",
    "aten.select.int",
    "aten.index.Tensor",
    "aten.split.Tensor",
    "aten.split_with_sizes.default",
    "aten.unbind.int",
    "aten.chunk.default",
    "aten.cat.default",
    "aten.stack.default",
    "aten.clone.default",
    "aten.alias.default",
    "aten.contiguous.default",
    "aten._to_copy.default",
    "aten.to.dtype",
    "aten.detach.default",
    "aten.lift_fresh_copy.default",
    "aten.full.default",
    "aten.zeros.default",
    "aten.ones.default",
    "aten.zeros_like.default",
    "aten.ones_like.default",
    "aten.full_like.default",
    "aten.scalar_tensor.default",
    "aten.arange.default",
    "aten.arange.start",
    "aten.arange.start_step",
    # layers
    "aten.conv1d.default",
    "aten.conv2d.default",
    "aten.convolution.default",
    "aten.linear.default",
    "aten.addmm.default",
    "aten.mm.default",
    "aten.bmm.default",
    "aten.matmul.default",
    "aten.baddbmm.default",
    "aten.embedding.default",
    "aten._native_batch_norm_legit_no_training.default",
    "aten.native_layer_norm.default",
    "aten.layer_norm.default",
    "aten.native_group_norm.default",
    "aten.group_norm.default",
    "aten.max_pool1d.default",
    "aten.max_pool2d.default",
    "aten.max_pool2d_with_indices.default",
    "aten.avg_pool1d.default",
    "aten.avg_pool2d.default",
    "aten.adaptive_avg_pool1d.default",
    "aten.adaptive_avg_pool2d.default",
    "aten._adaptive_avg_pool2d.default",
    "aten.adaptive_max_pool2d.default",
    "aten._softmax.default",
    "aten._log_softmax.default",
    "aten.softmax.int",
    "aten.log_softmax.int",
    "aten.scaled_dot_product_attention.default",
    "aten._scaled_dot_product_flash_attention_for_cpu.default",
    # reductions
    "aten.mean.dim",
    "aten.mean.default",
    "aten.sum.dim_IntList",
    "aten.sum.default",
    "aten.amax.default",
    "aten.amin.default",
    "aten.max.dim",
    "aten.var.correction",
}

#: Elementwise maths: functional and deterministic by construction, emitted or not.
_ELEMENTWISE = {
    "aten.abs.default",
    "aten.neg.default",
    "aten.sign.default",
    "aten.exp.default",
    "aten.expm1.default",
    "aten.log.default",
    "aten.log1p.default",
    "aten.log2.default",
    "aten.sqrt.default",
    "aten.rsqrt.default",
    "aten.reciprocal.default",
    "aten.sin.default",
    "aten.cos.default",
    "aten.tanh.default",
    "aten.sigmoid.default",
    "aten.erf.default",
    "aten.floor.default",
    "aten.ceil.default",
    "aten.round.default",
    "aten.trunc.default",
    "aten.add.Tensor",
    "aten.add.Scalar",
    "aten.sub.Tensor",
    "aten.sub.Scalar",
    "aten.rsub.Tensor",
    "aten.rsub.Scalar",
    "aten.mul.Tensor",
    "aten.mul.Scalar",
    "aten.div.Tensor",
    "aten.div.Scalar",
    "aten.div.Tensor_mode",
    "aten.pow.Tensor_Scalar",
    "aten.pow.Tensor_Tensor",
    "aten.pow.Scalar",
    "aten.remainder.Tensor",
    "aten.remainder.Scalar",
    "aten.maximum.default",
    "aten.minimum.default",
    "aten.clamp.default",
    "aten.clamp.Tensor",
    "aten.clamp_min.default",
    "aten.clamp_max.default",
    "aten.where.self",
    "aten.eq.Tensor",
    "aten.eq.Scalar",
    "aten.ne.Tensor",
    "aten.ne.Scalar",
    "aten.lt.Tensor",
    "aten.lt.Scalar",
    "aten.le.Tensor",
    "aten.le.Scalar",
    "aten.gt.Tensor",
    "aten.gt.Scalar",
    "aten.ge.Tensor",
    "aten.ge.Scalar",
    "aten.logical_and.default",
    "aten.logical_or.default",
    "aten.logical_not.default",
    "aten.bitwise_and.Tensor",
    "aten.bitwise_or.Tensor",
    "aten.bitwise_not.default",
    "aten.isnan.default",
    "aten.relu.default",
    "aten.gelu.default",
    "aten.silu.default",
    "aten.hardswish.default",
    "aten.hardsigmoid.default",
    "aten.hardtanh.default",
    "aten.leaky_relu.default",
    "aten.elu.default",
    "aten.softplus.default",
    "aten.mish.default",
}

#: Every operator a program may call, as ``aten.NAME.OVERLOAD``.
ALLOWED_OPERATORS: frozenset[str] = frozenset(_EMITTED | _ELEMENTWISE)

#: Allowed operators tagged random because they can drop out in training: a program may call
#: them only with their training argument off (``train=False``, ``dropout_p=0``: ``check_call``),
#: and then they are deterministic (``tests/unit/test_allowed_ops.py`` probes them so).
RANDOM_ONLY_IN_TRAINING: frozenset[str] = frozenset(
    {
        "aten.scaled_dot_product_attention.default",
        "aten._scaled_dot_product_flash_attention_for_cpu.default",
    }
)

#: Operators that return memory no one wrote: what it holds differs from run to run.
_UNINITIALISED = re.compile(r"^_?(new_)?empty")
#: Normalisations that can keep or use training state; only the inference form is listed above.
_NORMALISATION = re.compile(r"batch_norm|instance_norm")
#: Arguments by which an allowed operator is asked for training behaviour (batch statistics,
#: dropout: ``scaled_dot_product_attention``'s ``dropout_p``; export unrolls GRU and LSTM), with the
#: test of the one value a measured program may pass.
_INFERENCE_ARGUMENTS: dict[str, Callable[[Any], bool]] = {
    "training": lambda v: v is False,
    "train": lambda v: v is False,
    "dropout_p": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v == 0,
}


def check_operator(name: str, op: torch._ops.OpOverload) -> None:
    """Raise ProgramError, saying what to change in the model, unless a program may call ``op``.

    ``name`` is the format's ``aten.NAME.OVERLOAD`` for ``op``.
    """
    opname = name.split(".")[1]
    if torch.Tag.nondeterministic_seeded in op.tags and name not in RANDOM_ONLY_IN_TRAINING:
        raise ProgramError(
            f"operator {name} draws random numbers, so the same input would score differently"
            " on every pass: forward in eval mode must be deterministic (use nn.Dropout or"
            " F.dropout(x, p, training=self.training), and no torch.rand, randn, bernoulli or"
            " normal in forward)"
        )
    if _UNINITIALISED.match(opname):
        raise ProgramError(
            f"operator {name} returns uninitialised memory, whose contents differ from run to"
            " run: create tensors with torch.zeros, torch.full or x.new_zeros instead"
        )
    if _NORMALISATION.search(opname) and name not in ALLOWED_OPERATORS:
        raise ProgramError(
            f"operator {name} normalises with training state (batch statistics, and running"
            " statistics updated in place on every call): call model.eval() before export, pass no"
            " training=True to F.batch_norm or F.instance_norm in forward, and use nn.GroupNorm"
            " or nn.LayerNorm where a model needs statistics of its own input"
        )
    schema = op._schema
    if schema.is_mutable:
        raise ProgramError(
            f"operator {name} changes its inputs in place; a measured program must have no state"
            " (write forward without in-place updates of parameters or buffers)"
        )
    if name not in ALLOWED_OPERATORS:
        raise ProgramError(
            f"operator {name} is not one a measured program may call: the loader accepts a fixed"
            " list of functional, deterministic ATen operators (what torch.export emits for"
            " convolutional, recurrent and transformer models); build forward from standard"
            " torch.nn layers and tensor operations"
        )


def check_call(name: str, op: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse a call that asks an allowed operator for training behaviour by an argument.

    ``args`` and ``kwargs`` are a graph node's (Python values or graph nodes): a ``training`` or
    ``train`` argument must be a literal False, a ``dropout_p`` a literal 0.
    """
    if not isinstance(op, torch._ops.OpOverload):
        return
    for i, arg in enumerate(op._schema.arguments):
        allowed = _INFERENCE_ARGUMENTS.get(arg.name)
        if allowed is None:
            continue
        if i < len(args) and not arg.kwarg_only:
            value = args[i]
        elif arg.name in kwargs:
            value = kwargs[arg.name]
        else:
            value = arg.default_value if arg.has_default_value() else None
        if not allowed(value):
            raise ProgramError(
                f"operator {name} is called with {arg.name}={str(value)[:40]}, which turns on"
                " training behaviour (batch statistics or dropout): a measured program runs in"
                " eval mode (call model.eval() before export, and pass training=self.training,"
                " or dropout_p=0.0 outside training, to functional calls)"
            )
