"""ONNX's LSTM, GRU, RNN and Scan as the IR's loop: one `scan` per direction, not unrolled.

ONNX sequences are time-major (X is [seq_length, batch, input]; `layout=1` is batch-major and is
transposed at the edges), so each direction scans axis 0 and every step reads its slice in place.
As in nncompile's Keras layers, the input projection of all steps is one product before the loop
(X @ W^T + Wb + Rb), and each step one product of the state with the recurrent weights of all
gates (R^T, packed once before the loop), then the gates' arithmetic, which fusion makes one loop.

A direction that is one of the cells Keras's layers build (nncompile.ir.cells: constant weights,
the usual activations, no peepholes, clip or sequence_lens, as PyTorch writes them) imports as
that cell: weights reordered to Keras's layout once, the step built by the cells' own builders,
and the scan names its cell, so the model exports back as this operator. Any other is imported
in ONNX's terms, as follows.

Gate orders are ONNX's: LSTM i, o, f, c (peepholes P: i, o, f); GRU z, r, h. `sequence_lens`
masks the steps at and after each sequence's length: the state holds there (so a reverse
direction starts at each sequence's own last step) and Y is zero. `clip` bounds the gates' inputs.
"""
from __future__ import annotations

import numpy as np

from nncompile.ir import Builder, Value
from nncompile.ir.cells import ACTIVATION_COUNT, Cell, gate_block, gru_update, lstm_update
from nncompile.ir.ops.shape import SLICE_END
from nncompile.onnx.context import SMALL, Context, Entry
from nncompile.onnx.export_recurrent import keras_gate_order
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
# (name, alpha, beta) -> the cell activation it is (Keras's hard_sigmoid is relu6(x + 3) / 6)
_CELL_ACTIVATIONS = {("Sigmoid", None, None): "sigmoid", ("Tanh", None, None): "tanh",
                     ("Relu", None, None): "relu", ("HardSigmoid", 1 / 6, 0.5): "hard_sigmoid"}
_CELL_KIND = {"LSTM": "lstm", "RNN": "simple_rnn"}


def _activation_specs(ctx: Context, op: str, directions: int) -> list[list[tuple]]:
    """Per direction, the activation functions f, g (, h) as (name, alpha, beta)."""
    names = [n.decode() if isinstance(n, bytes) else n for n in ctx.attr("activations", [])]
    count = len(_DEFAULT_ACTIVATIONS[op])
    names = names or _DEFAULT_ACTIVATIONS[op] * directions
    if len(names) != count * directions:
        raise ctx.fail(f"activations lists {len(names)} functions; {op} takes {count} per direction "
                       f"({count * directions} for {directions} direction(s))")
    alphas, betas = list(ctx.attr("activation_alpha", [])), list(ctx.attr("activation_beta", []))
    specs = []
    for name in names:
        key = next((k for k in _ACTIVATIONS if k.lower() == name.lower()), None)
        if key is None:
            raise ctx.fail(f"activation {name!r} is not supported; supported: {', '.join(_ACTIVATIONS)}")
        _, alpha, beta = _ACTIVATIONS[key]
        a = alphas.pop(0) if alpha is not None and alphas else alpha
        c = betas.pop(0) if beta is not None and betas else beta
        specs.append((key, a, c))
    return [specs[d * count:(d + 1) * count] for d in range(directions)]


def _rule(spec: tuple):
    """An activation (name, alpha, beta) as a callable of (builder, x)."""
    key, a, c = spec
    return lambda b, x: _ACTIVATIONS[key][0](b, x, a, c)


def _cell_name(op: str, specs: list[tuple]) -> list[str] | None:
    """The activations of a cell the IR names (nncompile.ir.cells), gates' first, or None:
    an LSTM's g and h must be one function, and each one the cells know."""
    names = [_CELL_ACTIVATIONS.get(spec) for spec in specs]
    if None in names or (op == "LSTM" and names[1] != names[2]):
        return None
    return names[:2]


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
        specs = _activation_specs(ctx, op, len(self.reverse))
        self.activations = [[_rule(spec) for spec in direction] for direction in specs]
        self.cells = [self._named_cell(direction) for direction in specs]

    def optional(self, i: int) -> Value | None:
        return self.ctx.plain(i) if self.ctx.has(i) else None

    def run(self) -> list:
        x = self.ctx.plain(0)
        if self.batch_major:
            x = self.b.transpose(x, perm=[1, 0, 2])
        first = 5
        initial = [self.optional(first), self.optional(first + 1) if self.op == "LSTM" else None]
        ys, hs, cs = [], [], []
        for d, reverse in enumerate(self.reverse):
            if self.cells[d] is not None:
                states = [self._initial(x, s, d) for s in initial[:self.cells[d].states]]
                y, *finals = self._named_scan(d, reverse, x, states)
            else:
                y, *finals = self._general_scan(d, reverse, x, initial)
            ys.append(y)
            hs.append(finals[0])
            cs.append(finals[1] if len(finals) > 1 else None)
        return self._outputs(ys, hs, cs)

    def _general_scan(self, d: int, reverse: bool, x: Value, initial: list) -> list[Value]:
        """One direction with everything ONNX's operators have (peepholes, clip, any activation,
        sequence_lens, weights computed at run time), in ONNX's gate order."""
        ctx, b, gates, hidden = self.ctx, self.b, _GATES[self.op], self.hidden
        w, r, bias = ctx.plain(1), ctx.plain(2), self.optional(3)
        peepholes = self.optional(7) if self.op == "LSTM" else None
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
        return self._scan(d, reverse, projected, rd, bd, self._mask(x, self.optional(4)), states,
                          _direction_slice(ctx, b, peepholes, d) if peepholes is not None else None)

    def _named_cell(self, specs: list[tuple]) -> Cell | None:
        """The cell (nncompile.ir.cells) one direction is, when the IR can name it: constant
        weights, no sequence_lens, clip, peepholes or coupled gates, and activations a cell
        has. Such a direction imports as the cell Keras's layers build (and exports back as
        this operator)."""
        ctx = self.ctx
        names = _cell_name(self.op, specs)
        plain = (self.clip is None and not ctx.has(4) and not (self.op == "LSTM" and ctx.has(7))
                 and all(ctx.maybe_const(i) is not None for i in (1, 2) + ((3,) if ctx.has(3) else ())))
        if names is None or not plain:
            return None
        if self.op == "GRU":
            kind = "gru_reset_after" if ctx.attr("linear_before_reset", 0) else "gru"
        else:
            kind = _CELL_KIND[self.op]
        return Cell(kind, tuple(names[:ACTIVATION_COUNT[kind]]))

    def _named_scan(self, d: int, reverse: bool, x: Value, states: list[Value]) -> list[Value]:
        """One direction as its named cell: weights in Keras's layout (gate blocks reordered,
        kernels transposed, when imported), the inputs projected before the loop, and the step
        built by nncompile.ir.cells."""
        ctx, b, cell, n = self.ctx, self.b, self.cells[d], self.hidden
        name = ctx.node.name or self.op
        width = cell.gates * n
        kernel = keras_gate_order(cell.kind, ctx.maybe_const(1)[d]).T
        recurrent = keras_gate_order(cell.kind, ctx.maybe_const(2)[d]).T
        biases = ctx.maybe_const(3)[d] if ctx.has(3) else np.zeros(2 * width, kernel.dtype)
        wb, rb = (keras_gate_order(cell.kind, v) for v in (biases[:width], biases[width:]))
        projected = b.matmul(x, ctx.array_value(kernel, f"{name}/kernel_{d}"))
        if cell.kind == "gru_reset_after":
            invariants = [ctx.array_value(recurrent, f"{name}/recurrent_kernel_{d}"),
                          ctx.array_value(rb, f"{name}/recurrent_bias_{d}")]
        else:
            wb = wb + rb   # outside the reset: one bias
            invariants = ([ctx.array_value(recurrent[:, :2 * n], f"{name}/recurrent_kernel_zr_{d}"),
                           ctx.array_value(recurrent[:, 2 * n:], f"{name}/recurrent_kernel_h_{d}")]
                          if cell.kind == "gru" else [ctx.array_value(recurrent, f"{name}/recurrent_kernel_{d}")])
        if ctx.has(3):
            projected = b.add(projected, ctx.array_value(wb, f"{name}/bias_{d}"))
        body = Builder(name="body")
        olds = [body.input(f"state{i}", v.type) for i, v in enumerate(states)]
        step = body.input("xw", projected.type.with_shape(projected.type.shape[1:]))
        inner = [body.input(f"r{i}", v.type) for i, v in enumerate(invariants)]
        news = self._named_step(body, cell, step, olds, inner, self.activations[d])
        results = b.scan(*states, projected, *invariants, body=body.finish([*news, news[0]]),
                         num_carry=len(states), num_scanned=1, axis=0, reverse=reverse, cell=str(cell))
        return [results[-1], *results[:len(states)]]

    @staticmethod
    def _named_step(body: Builder, cell: Cell, xw: Value, olds: list[Value], inner: list[Value],
                    acts) -> list[Value]:
        h = olds[0]
        recurrent = body.matmul(h, inner[0])
        if cell.kind == "simple_rnn":
            return [acts[0](body, body.add(xw, recurrent))]
        if cell.kind == "lstm":
            return list(lstm_update(body, body.add(xw, recurrent), olds[1], acts[0], acts[1]))
        if cell.kind == "gru_reset_after":
            recurrent = body.add(recurrent, inner[1])
            reset = lambda r: body.mul(r, gate_block(body, recurrent, 2, h.type.shape[-1]))  # noqa: E731
        else:
            reset = lambda r: body.matmul(body.mul(r, h), inner[1])  # noqa: E731
        return [gru_update(body, xw, recurrent, h, acts[0], acts[1], reset)]

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
            else:   # a copy: the value the body makes of it is the body's, not the outer graph's
                entry = Entry(const=entry.const, perm=entry.perm, name=entry.name)
            self[name] = entry
            return entry

        def __contains__(self, name):
            return dict.__contains__(self, name) or name in outer

    return Env()


class _BodyContext(Context):
    """The Context of a Scan's body: a large constant it reads (an initializer of the enclosing
    graph, such as a recurrent kernel) becomes a parameter of the enclosing graph, read by the
    body as an invariant operand of the scan; a parameter of the body itself would be a body
    input with no operand."""

    def __init__(self, outer: Context, body: Builder, operands: list):
        super().__init__(body, outer.opset, outer.model)
        self.outer, self.operands = outer, operands
        self.env = _lifting_env(outer, body, operands)
        self._lifted: list[tuple[np.ndarray, Value]] = []

    def array_value(self, array: np.ndarray, name: str = "") -> Value:
        if array.size < SMALL or not name:
            return super().array_value(array, name)
        # converters pass arrays derived from an initializer under its name (a batch norm's
        # folded scale): the same name is the same operand only for the same array
        for lifted, value in self._lifted:
            if lifted is array or (lifted.shape == array.shape and lifted.dtype == array.dtype
                                   and np.array_equal(lifted, array)):
                return value
        self.operands.append(self.outer.array_value(array, name))
        value = self.b.input(f"outer{len(self.operands) - 1}", self.operands[-1].type)
        self._lifted.append((array, value))
        return value


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
    inner = _BodyContext(ctx, body, operands)
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
