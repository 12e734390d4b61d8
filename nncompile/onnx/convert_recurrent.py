"""ONNX's LSTM, GRU, RNN and Scan as the IR's loop: one `scan` per direction, not unrolled.

ONNX sequences are time-major (X is [seq_length, batch, input]; `layout=1` is batch-major and is
transposed at the edges), so each direction scans axis 0 and every step reads its slice in place.
As in nncompile's Keras layers, the input projection of all steps is one product before the loop
(X @ W^T + Wb + Rb), and each step one product of the state with the recurrent weights of all
gates (R^T, packed once before the loop), then the gates' arithmetic, which fusion makes one loop.

Gate orders are ONNX's: LSTM i, o, f, c (peepholes P: i, o, f); GRU z, r, h. `sequence_lens`
masks the steps at and after each sequence's length: the state holds there (so a reverse
direction starts at each sequence's own last step) and Y is zero. `clip` bounds the gates' inputs.
"""
from __future__ import annotations

import numpy as np

from nncompile.ir import Builder, Value
from nncompile.ir.ops.shape import SLICE_END
from nncompile.onnx.context import Context, Entry
from nncompile.onnx.importer import converter

_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
# name -> (rule(b, x, alpha, beta), default alpha, default beta), as ONNX's RNN operators define them
_ACTIVATIONS = {
    "Sigmoid": (lambda b, x, a, c: b.sigmoid(x), None, None),
    "Tanh": (lambda b, x, a, c: b.tanh(x), None, None),
    "Relu": (lambda b, x, a, c: b.relu(x), None, None),
    "LeakyRelu": (lambda b, x, a, c: b.select(b.greater(x, b.scalar(0.0, x)), x, b.mul(x, b.scalar(a, x))), 0.01, None),
    "HardSigmoid": (lambda b, x, a, c: b.minimum(b.maximum(b.add(b.mul(x, b.scalar(a, x)), b.scalar(c, x)),
                                                           b.scalar(0.0, x)), b.scalar(1.0, x)), 0.2, 0.5),
    "Affine": (lambda b, x, a, c: b.add(b.mul(x, b.scalar(a, x)), b.scalar(c, x)), 1.0, 0.0),
    "ScaledTanh": (lambda b, x, a, c: b.mul(b.tanh(b.mul(x, b.scalar(c, x))), b.scalar(a, x)), 1.0, 1.0),
    "Softsign": (lambda b, x, a, c: b.div(x, b.add(b.abs(x), b.scalar(1.0, x))), None, None),
}


def _activations(ctx: Context, op: str, directions: int) -> list[list]:
    """Per direction, the activation functions f, g (, h) as callables of (builder, x)."""
    names = [n.decode() if isinstance(n, bytes) else n for n in ctx.attr("activations", [])]
    count = len(_DEFAULT_ACTIVATIONS[op])
    names = names or _DEFAULT_ACTIVATIONS[op] * directions
    if len(names) != count * directions:
        raise ctx.fail(f"activations lists {len(names)} functions; {op} takes {count} per direction "
                       f"({count * directions} for {directions} direction(s))")
    alphas, betas = list(ctx.attr("activation_alpha", [])), list(ctx.attr("activation_beta", []))
    rules = []
    for i, name in enumerate(names):
        key = next((k for k in _ACTIVATIONS if k.lower() == name.lower()), None)
        if key is None:
            raise ctx.fail(f"activation {name!r} is not supported; supported: {', '.join(_ACTIVATIONS)}")
        rule, alpha, beta = _ACTIVATIONS[key]
        a = alphas.pop(0) if alpha is not None and alphas else alpha
        c = betas.pop(0) if beta is not None and betas else beta
        rules.append(lambda b, x, rule=rule, a=a, c=c: rule(b, x, a, c))
    return [rules[d * count:(d + 1) * count] for d in range(directions)]


def _direction_slice(ctx: Context, b: Builder, value: Value, d: int) -> Value:
    """value[d] of a [num_directions, ...] value."""
    part = b.slice(value, starts=[d], ends=[d + 1], axes=[0], steps=[1])
    return b.reshape(part, shape=value.type.shape[1:])


def _columns(b: Builder, value: Value, k: int, size: int) -> Value:
    """Block k of `size` columns of the last axis."""
    axis = value.type.rank - 1
    return b.slice(value, starts=[k * size], ends=[(k + 1) * size], axes=[axis], steps=[1])


class _Recurrent:
    """One ONNX recurrent node being imported."""

    def __init__(self, ctx: Context, op: str):
        self.ctx, self.op, self.b = ctx, op, ctx.b
        self.hidden = int(ctx.attr("hidden_size"))
        direction = ctx.attr("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ctx.fail(f"direction {direction!r} is not one of forward, reverse, bidirectional")
        self.reverse = [False, True] if direction == "bidirectional" else [direction == "reverse"]
        if op == "LSTM" and ctx.attr("input_forget", 0):
            raise ctx.fail("input_forget=1 (the forget gate coupled to the input gate) is not supported")
        self.clip = ctx.attr("clip")
        self.batch_major = bool(ctx.attr("layout", 0))
        self.activations = _activations(ctx, op, len(self.reverse))

    def optional(self, i: int) -> Value | None:
        return self.ctx.plain(i) if self.ctx.has(i) else None

    def run(self) -> list:
        ctx, b, gates, hidden = self.ctx, self.b, _GATES[self.op], self.hidden
        x = ctx.plain(0)
        if self.batch_major:
            x = b.transpose(x, perm=[1, 0, 2])
        w, r, bias = ctx.plain(1), ctx.plain(2), self.optional(3)
        mask = self._mask(x, self.optional(4))
        first = 5
        initial = [self.optional(first), self.optional(first + 1) if self.op == "LSTM" else None]
        peepholes = self.optional(7) if self.op == "LSTM" else None
        ys, hs, cs = [], [], []
        for d, reverse in enumerate(self.reverse):
            wd, rd = _direction_slice(ctx, b, w, d), _direction_slice(ctx, b, r, d)
            projected = b.matmul(x, wd, transpose_b=True)
            bd = _direction_slice(ctx, b, bias, d) if bias is not None else None
            if bd is not None and self.op != "GRU":
                projected = b.add(projected, b.add(_columns(b, bd, 0, gates * hidden),
                                                   _columns(b, bd, 1, gates * hidden)))
            elif bd is not None:   # GRU: Rb of the h gate is applied inside (linear_before_reset)
                projected = b.add(projected, _columns(b, bd, 0, gates * hidden))
            states = [self._initial(x, s, d) for s in initial if s is not None or self.op == "LSTM"]
            if not states:
                states = [self._initial(x, None, d)]
            y, *finals = self._scan(d, reverse, projected, rd, bd, mask, states,
                                    _direction_slice(ctx, b, peepholes, d) if peepholes is not None else None)
            ys.append(y)
            hs.append(finals[0])
            cs.append(finals[1] if len(finals) > 1 else None)
        return self._outputs(ys, hs, cs)

    def _initial(self, x: Value, given: Value | None, d: int) -> Value:
        if given is not None:
            return _direction_slice(self.ctx, self.b, given, d)
        return self.b.broadcast(self.b.scalar(0.0, x), shape=[x.type.shape[1], self.hidden])

    def _mask(self, x: Value, lengths: Value | None) -> Value | None:
        """[seq, batch, 1] bool: step t of sequence n is within its length."""
        if lengths is None:
            return None
        b = self.b
        steps = x.type.shape[0]
        if not isinstance(steps, int):
            raise self.ctx.fail("sequence_lens with a symbolic sequence length is not supported")
        times = b.constant(np.arange(steps, dtype=np.int64).reshape(steps, 1))
        keep = b.less(times, b.reshape(b.cast(lengths, dtype="i64"), shape=[1, x.type.shape[1]]))
        return b.reshape(keep, shape=[steps, x.type.shape[1], 1])

    def _invariants(self, rd: Value, bd: Value | None, peepholes: Value | None) -> dict[str, Value]:
        """What every step reads whole: the recurrent weights (a GRU computing the candidate after
        the reset splits them: z and r's rows, h's rows), a GRU's recurrent bias, LSTM peepholes."""
        b, n = self.b, self.hidden
        if self.op == "GRU" and not self.ctx.attr("linear_before_reset", 0):
            rows = lambda k0, k1: b.slice(rd, starts=[k0 * n], ends=[k1 * n], axes=[0], steps=[1])  # noqa: E731
            found = {"r_zr": rows(0, 2), "r_h": rows(2, 3)}
        else:
            found = {"r": rd}
        if self.op == "GRU" and bd is not None:
            found["rb"] = _columns(b, bd, 1, 3 * n)
        if peepholes is not None:
            found["p"] = peepholes
        return found

    def _scan(self, d, reverse, projected, rd, bd, mask, states, peepholes) -> list[Value]:
        b = self.b
        body = Builder(name="body")
        olds = [body.input(f"state{i}", s.type) for i, s in enumerate(states)]
        step = body.input("xw", projected.type.with_shape(projected.type.shape[1:]))
        keep = body.input("keep", mask.type.with_shape(mask.type.shape[1:])) if mask is not None else None
        invariants = self._invariants(rd, bd, peepholes)
        inner = {k: body.input(k, v.type) for k, v in invariants.items()}
        news = self._cell(body, step, olds, inner, self.activations[d])
        if keep is not None:
            news = [body.select(keep, new, old) for new, old in zip(news, olds)]
            y = body.select(keep, news[0], body.broadcast(body.scalar(0.0, news[0]), shape=news[0].type.shape))
        else:
            y = news[0]
        graph = body.finish([*news, y])
        scanned = [projected] + ([mask] if mask is not None else [])
        results = b.scan(*states, *scanned, *invariants.values(), body=graph, num_carry=len(states),
                         num_scanned=len(scanned), axis=0, reverse=reverse)
        return [results[-1], *results[:len(states)]]

    def _gate_input(self, body: Builder, z: Value) -> Value:
        if self.clip is None:
            return z
        return body.minimum(body.maximum(z, body.scalar(-self.clip, z)), body.scalar(self.clip, z))

    def _cell(self, body: Builder, xw: Value, olds: list[Value], inner: dict, acts) -> list[Value]:
        if self.op == "RNN":
            recurrent = body.matmul(olds[0], inner["r"], transpose_b=True)
            return [acts[0](body, self._gate_input(body, body.add(xw, recurrent)))]
        if self.op == "LSTM":
            return self._lstm(body, xw, olds, inner, acts)
        return [self._gru(body, xw, olds[0], inner, acts)]

    def _lstm(self, body, xw, olds, inner, acts) -> list[Value]:
        f, g, h_act = acts
        n = self.hidden
        h, c = olds
        recurrent = body.matmul(h, inner["r"], transpose_b=True)
        z = [body.add(_columns(body, xw, k, n), _columns(body, recurrent, k, n)) for k in range(4)]  # i o f c
        p = [_columns(body, inner["p"], k, n) for k in range(3)] if "p" in inner else None   # i o f
        if p is not None:
            z[0], z[2] = body.add(z[0], body.mul(p[0], c)), body.add(z[2], body.mul(p[2], c))
        i, forget = f(body, self._gate_input(body, z[0])), f(body, self._gate_input(body, z[2]))
        c2 = body.add(body.mul(forget, c), body.mul(i, g(body, self._gate_input(body, z[3]))))
        o = f(body, self._gate_input(body, body.add(z[1], body.mul(p[1], c2)) if p is not None else z[1]))
        return [body.mul(o, h_act(body, c2)), c2]

    def _gru(self, body, xw, h, inner, acts) -> Value:
        f, g = acts
        n = self.hidden

        def with_rb(k: int, v: Value) -> Value:
            return body.add(v, _columns(body, inner["rb"], k, n)) if "rb" in inner else v

        def gate(k: int, recurrent: Value) -> Value:
            return f(body, self._gate_input(body, body.add(_columns(body, xw, k, n), with_rb(k, recurrent))))

        recurrent = body.matmul(h, inner.get("r", inner.get("r_zr")), transpose_b=True)
        z, reset = gate(0, _columns(body, recurrent, 0, n)), gate(1, _columns(body, recurrent, 1, n))
        if "r" in inner:        # linear_before_reset: r (.) (h @ Rh^T + Rbh)
            candidate = body.mul(reset, with_rb(2, _columns(body, recurrent, 2, n)))
        else:                   # (r (.) h) @ Rh^T + Rbh
            candidate = with_rb(2, body.matmul(body.mul(reset, h), inner["r_h"], transpose_b=True))
        hh = g(body, self._gate_input(body, body.add(_columns(body, xw, 2, n), candidate)))
        return body.add(body.mul(body.sub(body.scalar(1.0, z), z), hh), body.mul(z, h))

    def _outputs(self, ys: list[Value], hs: list[Value], cs: list) -> list:
        b = self.b
        steps, batch = ys[0].type.shape[0], ys[0].type.shape[1]
        y = b.concat(*(b.reshape(v, shape=[steps, 1, batch, self.hidden]) for v in ys), axis=1) \
            if len(ys) > 1 else b.reshape(ys[0], shape=[steps, 1, batch, self.hidden])
        finals = [b.concat(*(b.reshape(v, shape=[1, batch, self.hidden]) for v in vs), axis=0)
                  if len(vs) > 1 else b.reshape(vs[0], shape=[1, batch, self.hidden])
                  for vs in ([hs, cs] if cs[0] is not None else [hs])]
        if self.batch_major:
            y = b.transpose(y, perm=[2, 0, 1, 3])
            finals = [b.transpose(v, perm=[1, 0, 2]) for v in finals]
        return [y, *finals]


@converter("LSTM", "GRU", "RNN")
def _recurrent(ctx: Context) -> list:
    return _Recurrent(ctx, ctx.node.op_type).run()


# --- ONNX's Scan: its body imported as the IR scan's ------------------------------------------

def _lifting_env(ctx: Context, body: Builder, operands: list) -> dict:
    """The body's view of the enclosing graph: constants copied in; an IR value becomes a body
    input bound to it (an invariant operand of the scan), made when first read."""
    outer = ctx.env

    class Env(dict):
        def __missing__(self, name):
            entry = outer[name]
            if entry.const is None:
                value = body.input(f"outer{len(operands)}", entry.value.type)
                operands.append(entry.value)
                entry = Entry(value=value, perm=entry.perm, name=entry.name)
            self[name] = entry
            return entry

        def __contains__(self, name):
            return dict.__contains__(self, name) or name in outer

    return Env()


@converter("Scan")
def _onnx_scan(ctx: Context) -> list:
    from nncompile.onnx.importer import _array, _import_node

    if ctx.opset < 9:
        raise ctx.fail("Scan before opset 9 (with sequence_lens) is not supported")
    graph = ctx.attr("body")
    m = int(ctx.attr("num_scan_inputs"))
    n = ctx.count - m
    directions = set(ctx.attr("scan_input_directions", [0] * m))
    if len(directions) > 1:
        raise ctx.fail("scan inputs read in different directions are not supported")
    reverse = bool(directions.pop()) if directions else False
    b = ctx.b
    states = [ctx.plain(i) for i in range(n)]
    scanned = [_to_front(b, ctx.plain(n + j), axis) for j, axis in enumerate(ctx.attr("scan_input_axes", [0] * m))]
    body = Builder(name="body")
    operands: list = []
    inner = Context(body, ctx.opset, ctx.model)
    inner.env = _lifting_env(ctx, body, operands)
    carried = [body.input(f"state{i}", v.type) for i, v in enumerate(states)]
    slices = [body.input(f"slice{j}", v.type.with_shape(v.type.shape[1:])) for j, v in enumerate(scanned)]
    for init in graph.initializer:
        inner.env[init.name] = Entry(const=_array(init), name=init.name)
    for vi, value in zip(graph.input, [*carried, *slices]):
        inner.env[vi.name] = Entry(value=value)
    for node in graph.node:
        inner.start(node)
        _import_node(inner, node)
    results = [_output(inner, vi.name) for vi in graph.output]
    outs = list(b.scan(*states, *scanned, *operands, body=body.finish(results), num_carry=n,
                       num_scanned=m, axis=0, reverse=reverse))
    per_step = len(graph.output) - n
    axes = ctx.attr("scan_output_axes", [0] * per_step)
    out_directions = ctx.attr("scan_output_directions", [0] * per_step)
    for k in range(per_step):
        y = outs[n + k]
        if bool(out_directions[k]) != reverse:   # ONNX appends or prepends; the IR stores step t at t
            y = b.slice(y, starts=[-1], ends=[-SLICE_END], axes=[0], steps=[-1])
        outs[n + k] = _from_front(b, y, axes[k])
    return outs


def _output(ctx: Context, name: str) -> Value:
    """A body output in ONNX's axis order (as the importer returns graph outputs)."""
    if name not in ctx.env:
        raise ctx.fail(f"the Scan body's output {name!r} is produced by no node")
    entry = ctx.env[name]
    return ctx.transpose(ctx.materialize(entry), [entry.perm.index(a) for a in range(len(entry.perm))])


def _to_front(b: Builder, value: Value, axis: int) -> Value:
    axis %= value.type.rank
    if axis == 0:
        return value
    return b.transpose(value, perm=[axis, *(a for a in range(value.type.rank) if a != axis)])


def _from_front(b: Builder, value: Value, axis: int) -> Value:
    axis %= value.type.rank
    if axis == 0:
        return value
    perm = list(range(1, value.type.rank))
    perm.insert(axis, 0)
    return b.transpose(value, perm=perm)
