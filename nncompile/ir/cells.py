"""The recurrent cells a `scan` can name in its `cell` attribute, and the operands that naming
promises.

A scan built as one of these cells says so (`cell="lstm:sigmoid,tanh"`), so that a consumer
that knows the cell by name (ONNX's LSTM, GRU and RNN operators, a cuDNN-style kernel) can take
the loop whole instead of its body op by op. The attribute is `kind:activations`, the
activations comma-separated, the gates' first (LSTM and GRU: the recurrent activation, then the
cell's). Its operands are, for `units` H and G gates:

- carries: h (batch, H), and for an LSTM then c (batch, H);
- one scanned operand along axis 0: the inputs already projected for every gate,
  (steps, batch, G * H), bias included (the projection runs before the loop as one product);
- invariants: the recurrent kernel (H, G * H); a GRU with `reset_after` (`gru_reset_after`)
  then its recurrent bias (G * H,) if it has one; a GRU without (`gru`) has the kernel split
  into the z and r columns (H, 2H) and the h columns (H, H), the h gate's product coming after
  the reset.

Gates are laid out along the columns in Keras's order: LSTM i, f, c, o; GRU z, r, h. The step
is Keras's: an LSTM's c = f * c + i * act(z_c), h = o * act(c); a GRU's
h = z * h + (1 - z) * act(x_h + reset-applied recurrent part). The body's per-step outputs, if
any, are the new h. The verifier checks the operands' types; the body holds the arithmetic,
which `lstm_update` and `gru_update` below write for every builder of these cells (Keras's
layers and the ONNX importer), so that what a name promises is built in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from nncompile.ir.builder import Builder
from nncompile.ir.errors import ShapeError
from nncompile.ir.graph import Value
from nncompile.ir.types import TensorType

Activation = Callable[[Builder, Value], Value]

GATES = {"lstm": 4, "gru": 3, "gru_reset_after": 3, "simple_rnn": 1}
# How many activations each kind takes: the gates' (recurrent) one, then the cell's.
ACTIVATION_COUNT = {"lstm": 2, "gru": 2, "gru_reset_after": 2, "simple_rnn": 1}
# Activations a cell may be named with: those ONNX's recurrent operators can also express.
ACTIVATIONS = ("sigmoid", "tanh", "relu", "hard_sigmoid")


@dataclass(frozen=True)
class Cell:
    kind: str
    activations: tuple[str, ...]

    @property
    def gates(self) -> int:
        return GATES[self.kind]

    @property
    def states(self) -> int:
        """Carries: h, and c for an LSTM."""
        return 2 if self.kind == "lstm" else 1

    def __str__(self) -> str:
        return f"{self.kind}:{','.join(self.activations)}"


def parse_cell(text: str) -> Cell:
    """The Cell a `cell` attribute names; ShapeError if it names none."""
    kind, _, acts = text.partition(":")
    activations = tuple(a for a in acts.split(",") if a)
    if kind not in GATES:
        raise ShapeError(f"cell {text!r} names no cell; expected one of {', '.join(GATES)}, then "
                         f"':' and its activations")
    if len(activations) != ACTIVATION_COUNT[kind] or any(a not in ACTIVATIONS for a in activations):
        raise ShapeError(f"cell {text!r}: a {kind} cell takes {ACTIVATION_COUNT[kind]} activation(s) "
                         f"of {', '.join(ACTIVATIONS)}, comma-separated after ':'")
    return Cell(kind, activations)


def check_cell_operands(cell: Cell, attrs: dict, carries: list[TensorType],
                        scanned: list[TensorType], invariants: list[TensorType]) -> None:
    """The scan's operands are the ones `cell` promises (module docstring)."""
    if attrs["axis"] != 0 or len(scanned) != 1 or len(carries) != cell.states:
        raise ShapeError(f"cell {cell}: a scan of this cell has {cell.states} carries and one "
                         f"scanned operand along axis 0, not {len(carries)} carries and "
                         f"{len(scanned)} scanned along axis {attrs['axis']}")
    h = carries[0]
    units, dtype = h.shape[-1], h.dtype
    if h.rank != 2 or any(c != h for c in carries):
        raise ShapeError(f"cell {cell}: the states must be (batch, units) of one type, got "
                         f"{', '.join(str(c) for c in carries)}")
    width = cell.gates * units
    expected = [TensorType(dtype, (scanned[0].shape[0], h.shape[0], width))]
    if cell.kind == "gru":
        kernels = [TensorType(dtype, (units, 2 * units)), TensorType(dtype, (units, units))]
    else:
        kernels = [TensorType(dtype, (units, width))]
    biases = [TensorType(dtype, (width,))] if cell.kind == "gru_reset_after" and len(invariants) == 2 else []
    for what, want, got in [*zip(["projected inputs"], expected, scanned),
                            *zip(["recurrent kernel"] * len(kernels) + ["recurrent bias"],
                                 kernels + biases, invariants)]:
        if got != want:
            raise ShapeError(f"cell {cell}: the {what} must be {want}, got {got}")
    if len(invariants) != len(kernels) + len(biases):
        raise ShapeError(f"cell {cell}: expected {len(kernels) + len(biases)} invariant(s) "
                         f"(the recurrent weights), got {len(invariants)}")


def gate_block(b: Builder, z: Value, k: int, units: int) -> Value:
    """Gate k's `units` columns of a (batch, gates * units) value."""
    return b.slice(z, starts=[k * units], ends=[(k + 1) * units], axes=[1], steps=[1])


def lstm_update(b: Builder, z: Value, c: Value, gate: Activation, act: Activation) -> tuple[Value, Value]:
    """(h, c) of an LSTM step from z = projected inputs + h @ recurrent kernel (gates i, f, c, o)."""
    units = c.type.shape[-1]
    i, f, o = (gate(b, gate_block(b, z, k, units)) for k in (0, 1, 3))
    c = b.add(b.mul(f, c), b.mul(i, act(b, gate_block(b, z, 2, units))))
    return b.mul(o, act(b, c)), c


def gru_update(b: Builder, projected: Value, inner: Value, h: Value, gate: Activation, act: Activation,
               reset: Callable[[Value], Value]) -> Value:
    """The new h of a GRU step: z and r from the projected inputs plus `inner` (the state's
    product with the z and r columns of the recurrent kernel, first), and the candidate from
    the inputs' h block plus `reset(r)`, the state's part with the reset applied (before or
    after its product with the h columns)."""
    units = h.type.shape[-1]
    z, r = (gate(b, b.add(gate_block(b, projected, k, units), gate_block(b, inner, k, units))) for k in (0, 1))
    candidate = reset(r)
    hh = act(b, b.add(gate_block(b, projected, 2, units), candidate))
    # z * h + (1 - z) * hh, written as hh + z * (h - hh): one multiply fewer.
    return b.add(hh, b.mul(z, b.sub(h, hh)))
