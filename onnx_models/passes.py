"""The graph passes a recipe lists in ``fusions``, and the order they must run in.

A recipe's passes run in the order it lists them. Passes on the float graph run before the
weights are quantised; "late" ones need ONNX Runtime's own fusions first (RMSNorm,
FusedMatMul) and run after its offline optimisation. ``after`` names the passes whose output
a pass reads: when both are listed, the recipe must list them in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import onnx

from . import fusions
from .attention import attention
from .heads import flat_heads
from .pooling import matmul_pooling
from .rotary import rotary
from .rowsteps import row_steps
from .shapes import lean_shapes
from .split import split_queries
from .window import banded_attention


@dataclass(frozen=True)
class Pass:
    run: Callable[[onnx.ModelProto, Any], object]  # (model, recipe)
    late: bool  # after ONNX Runtime's offline optimisation
    after: tuple[str, ...] = ()


PASSES: dict[str, Pass] = {
    "fast_gelu": Pass(lambda model, _recipe: fusions.fast_gelu(model), late=False),
    # the rule of each merged MatMul decides whether it may merge
    "merge_matmuls": Pass(lambda m, recipe: fusions.merge_matmuls(m, recipe.rule_for), False),
    "skip_rms_norm": Pass(lambda model, _recipe: fusions.skip_rms_norm(model), late=True),
    "attention": Pass(lambda model, _recipe: attention(model), late=True),
    # reads the attention's inputs; the exporter's shape chains it folds feed the attention
    "lean_shapes": Pass(lambda model, _recipe: lean_shapes(model), True, ("attention",)),
    # checks Slice bounds that lean_shapes makes constants
    "rotary": Pass(lambda model, _recipe: rotary(model), True, ("lean_shapes",)),
    # matches the 4-D nodes of rotary and attention
    "flat_heads": Pass(lambda model, _recipe: flat_heads(model), True, ("rotary", "attention")),
    # q/k reach their norms through flat_heads' Reshapes
    "row_steps": Pass(lambda model, _recipe: row_steps(model), True, ("flat_heads",)),
    # wraps the sliding layers' (flat) Attention in an If
    "banded_attention": Pass(
        lambda model, _recipe: banded_attention(model), True, ("attention", "flat_heads")
    ),
    # the pooled rows, bit for bit the same at any batch size (a quantised head's input)
    "matmul_pooling": Pass(lambda model, _recipe: matmul_pooling(model), late=True),
    # wraps every Attention a batch of one reaches, the banded ones included: last
    "split_queries": Pass(
        lambda model, _recipe: split_queries(model), True, ("attention", "banded_attention")
    ),
}


def order_problems(names: Sequence[str]) -> list[str]:
    """Why ``names`` cannot run in the order given (empty when it can)."""
    problems = [f"unknown fusion {n!r}" for n in names if n not in PASSES]
    if problems:
        return problems
    problems += [f"fusion {n!r} listed twice" for n in dict.fromkeys(names) if names.count(n) > 1]
    late_seen: str | None = None
    for i, name in enumerate(names):
        step = PASSES[name]
        if not step.late and late_seen:
            problems.append(f"{name} runs on the float graph: list it before {late_seen}")
        late_seen = late_seen or (name if step.late else None)
        problems += [
            f"{name} reads the output of {dep}: list it after {dep}"
            for dep in step.after
            if dep in names and names.index(dep) > i
        ]
    return problems
