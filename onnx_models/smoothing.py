"""SmoothQuant-style migration of activation outliers into weights.

For a group of weight MatMuls sharing an input x, per-channel factors s (from calibration)
give x @ W == (x / s) @ (s[:, None] * W). The 1/s is folded exactly into what produces x:
* the RMSNorm scale vector (x = Mul(normed, gamma)) for q/k/v and gate/up, or
* the up_proj weight columns for down_proj (x = Mul(gelu(gate), up_proj(h))),
so the float graph is unchanged up to rounding while x has fewer outlier channels."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from embgemma_plugins.maths import rotate, rotation_block

from . import graph as G


@dataclass
class Group:
    tensor: str  # the shared input x
    matmuls: list[onnx.NodeProto]
    fold_into: str  # initializer receiving 1/s
    fold_axis: int  # -1: vector / weight columns (last axis)


def groups(model: onnx.ModelProto, pattern: str) -> list[Group]:
    """Smoothable groups of weight MatMuls matching `pattern`."""
    prod, cons, inits = G.producers(model), G.consumers(model), G.initializers(model)
    by_input: dict[str, list[onnx.NodeProto]] = {}
    for node in G.weight_matmuls(model):
        if re.search(pattern, node.name):
            by_input.setdefault(node.input[0], []).append(node)
    found = []
    for tensor, mms in by_input.items():
        users = [
            u for u in cons.get(tensor, []) if u.op_type != "Shape"
        ]  # shape-only users don't see values
        mul = prod.get(tensor)
        if len(users) != len(mms) or mul is None or mul.op_type != "Mul":
            continue
        k = G.dims(inits[mms[0].input[1]])[0]
        target = None
        for side in mul.input:
            if side in inits and len(cons[side]) == 1 and int(np.prod(G.dims(inits[side]))) == k:
                target = side  # RMSNorm scale vector
            elif side in prod and prod[side].op_type == "MatMul" and len(cons[side]) == 1:
                up = prod[side]
                if (
                    up.input[1] in inits
                    and len(cons[up.input[1]]) == 1
                    and len(G.dims(inits[up.input[1]])) == 2
                ):
                    target = up.input[1]  # up_proj weight columns
        if target is not None:
            found.append(Group(tensor, mms, target, -1))
    return found


@dataclass
class ChannelStats:
    """Calibration statistics of one MatMul input x over real tokens: per-channel max |x| and
    mean x**2, and (when asked for) the mean outer product x x^T, GPTQ's Hessian."""

    absmax: np.ndarray
    mean_sq: np.ndarray
    hessian: np.ndarray | None = None

    def divided(self, s: np.ndarray) -> ChannelStats:
        """The statistics of x / s (after smoothing by s)."""
        h = None if self.hessian is None else self.hessian / np.outer(s, s)
        return ChannelStats(self.absmax / s, self.mean_sq / s**2, h)

    def rotated(self, signs: np.ndarray) -> ChannelStats:
        """The statistics of x R (`maths.rotate`): H -> R^T H R, exact; mean x**2 its diagonal
        (without a Hessian, each block's mean: uncorrelated channels); max |x| a bound."""
        block = rotation_block(len(signs))
        bound = np.repeat(self.absmax.reshape(-1, block).sum(1) / np.sqrt(block), block)
        if self.hessian is None:
            spread = np.repeat(self.mean_sq.reshape(-1, block).mean(1), block)
            return ChannelStats(bound, spread)
        h = rotate(rotate(self.hessian, signs).T, signs).T
        return ChannelStats(bound, np.diag(h).copy(), h)


Stats = dict[str, ChannelStats]


def activation_stats(
    model: onnx.ModelProto | Path,
    tensors: list[str],
    ids: list[list[int]],
    batch_tokens: int = 4096,
    hessians: bool = False,
    done: Callable[[int], None] | None = None,
) -> Stats:
    """Statistics of the named tensors over the real (non-pad) tokens of `ids`; with
    `hessians`, also the mean x x^T of each (float64, channels x channels). `model` may be a
    file saved with `G.save`: the probe graph then reads its weights in place, with no copy
    of them in memory beside the session's. `done(n)` after each batch of `n` texts."""
    import onnxruntime as ort

    absmax: dict[str, np.ndarray] = {}
    sumsq: dict[str, np.ndarray] = {}
    outer: dict[str, np.ndarray] = {}
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model, Path):  # the graph alone, beside the weights it names
            probe = onnx.load(str(model), load_external_data=False)
            path = model.with_name("probe.onnx")
        else:
            probe = onnx.ModelProto()
            probe.CopyFrom(model)
            path = Path(tmp) / "probe.onnx"
        probe.graph.output.extend(
            onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors
        )
        if isinstance(model, Path):
            onnx.save_model(probe, str(path))
        else:
            G.save(probe, path)
        del probe
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for input_ids, mask in batches(ids, batch_tokens):
            count += int(mask.sum())
            for name, value in zip(
                tensors,
                sess.run(tensors, {"input_ids": input_ids, "attention_mask": mask}),
                strict=True,
            ):
                real = value[mask.astype(bool)].astype(np.float64)
                absmax[name] = np.maximum(absmax.get(name, 0), np.abs(real).max(0))
                sumsq[name] = sumsq.get(name, 0) + (real**2).sum(0)
                if hessians:
                    outer[name] = outer.get(name, 0) + real.T @ real
            if done is not None:
                done(len(input_ids))
    return {
        name: ChannelStats(
            absmax[name], sumsq[name] / count, outer[name] / count if hessians else None
        )
        for name in tensors
    }


def batches(ids: list[list[int]], batch_tokens: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Length-sorted, right-padded (input_ids, attention_mask) int64 batches."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * len(ids[order[end]]) <= batch_tokens:
            end += 1
        chunk = [ids[i] for i in order[start:end]]
        width = max(map(len, chunk))
        input_ids = np.zeros((len(chunk), width), np.int64)
        for row, seq in enumerate(chunk):
            input_ids[row, : len(seq)] = seq
        yield (
            input_ids,
            (np.arange(width)[None, :] < np.array([len(s) for s in chunk])[:, None]).astype(
                np.int64
            ),
        )
        start = end


WeightError = Callable[[onnx.NodeProto, np.ndarray, np.ndarray], float]
ALPHAS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75)


def smooth(
    model: onnx.ModelProto,
    rules: Sequence[tuple[str, float | None]],
    stats: Stats,
    weight_error: WeightError | None = None,
) -> int:
    """Apply smoothing in place for each (pattern, alpha) rule; `stats` (from `activation_stats`)
    must cover the inputs of the matching groups and is updated to the smoothed inputs.

    alpha fixed: SmoothQuant, s_j = max|x_j|**alpha / max|W_j.|**(1 - alpha) (eases activation
    quantisation). alpha None: AWQ-style, s_j = rms(x_j)**a with `a` from ALPHAS minimising
    `weight_error(node, s * W, rms**2 / s**2)` summed over the group (eases weight quantisation).
    Returns the number of MatMuls smoothed."""
    plan = [(g, alpha) for pattern, alpha in rules for g in groups(model, pattern)]
    for g, alpha in plan:
        weights = [G.array(model, n.input[1]) for n in g.matmuls]
        seen = stats[g.tensor]
        x_max, x_ms = np.maximum(seen.absmax, 1e-10), np.maximum(seen.mean_sq, 1e-10)
        if alpha is None:
            if weight_error is None:
                raise ValueError("searching the smoothing strength needs weight_error")
            cost = {
                a: sum(
                    weight_error(
                        n,
                        w * _centre(x_ms ** (a / 2))[:, None],
                        x_ms / _centre(x_ms ** (a / 2)) ** 2,
                    )
                    for n, w in zip(g.matmuls, weights, strict=True)
                )
                for a in ALPHAS
            }
            s = _centre(x_ms ** (min(cost, key=lambda a: cost[a]) / 2))
        else:
            w_max = np.maximum(np.max([np.abs(w).max(1) for w in weights], axis=0), 1e-5)
            s = _centre(x_max**alpha / w_max ** (1 - alpha))
        for n, weight in zip(g.matmuls, weights, strict=True):
            G.set_array(model, n.input[1], (weight * s[:, None]).astype(np.float32))
        target = G.array(model, g.fold_into)
        G.set_array(
            model,
            g.fold_into,
            (target / s.reshape((1,) * (target.ndim - 1) + (-1,))).astype(np.float32),
        )
        stats[g.tensor] = stats[g.tensor].divided(s)
    return sum(len(g.matmuls) for g, _ in plan)


def _centre(s: np.ndarray) -> np.ndarray:
    """Scale factors centred (geometrically) on 1; the product x/s * s*W does not depend on it."""
    s = np.asarray(s, np.float64)
    centred: np.ndarray = s / np.sqrt(s.max() * s.min())
    return centred
