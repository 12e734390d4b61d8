"""`model.summary()`: the table Keras 3 prints, character for character.

Keras 3 draws the table with `rich` (heavy-head box, a rule between rows, fixed column widths
that rich then shrinks evenly to fit the line). This module reproduces that layout, the word
wrapping inside cells and the "…" that ends text too long for its column, without rich.
"""
from __future__ import annotations

import shutil
import sys
from typing import Callable, Sequence

import numpy as np

from nncompile.keras.layers.base import Layer
from nncompile.keras.saving.optimizer_state import optimizer_variables

_SEQUENTIAL_COLUMNS = (88, [0.45, 0.80, 1.0], ["Layer (type)", "Output Shape", "Param #"],
                       ["left", "left", "right"])
_FUNCTIONAL_COLUMNS = (108, [0.3, 0.56, 0.74, 1.0],
                       ["Layer (type)", "Output Shape", "Param #", "Connected to"],
                       ["left", "left", "right", "left"])
_UNITS = ["B", "KB", "MB", "GB", "TB", "PB"]


def print_summary(model, line_length: int | None = None, positions: Sequence[float] | None = None,
                  print_fn: Callable[[str], object] | None = None, expand_nested: bool = False,
                  show_trainable: bool = False) -> None:
    """Print the summary of `model` (through `print_fn` in one call, as Keras 3 does)."""
    text = summary_text(model, line_length, positions, expand_nested, show_trainable)
    if print_fn is None:
        sys.stdout.write(text)
    else:
        print_fn(text)


def summary_text(model, line_length: int | None = None, positions: Sequence[float] | None = None,
                 expand_nested: bool = False, show_trainable: bool = False) -> str:
    """The summary as one string, each line ending in a newline."""
    layers, relevant = _rows_source(model)
    default, default_positions, header, align = (
        _SEQUENTIAL_COLUMNS if relevant is None else _FUNCTIONAL_COLUMNS)
    positions = list(positions or default_positions)
    header, align = list(header), list(align)
    if show_trainable:
        default += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header.append("Trainable")
        align.append("center")
    line_length = line_length or min(default, shutil.get_terminal_size().columns - 4)
    widths = _column_widths(positions, line_length)
    rows = [row for layer in layers
            for row in _layer_rows(layer, relevant, expand_nested, show_trainable, 0)]
    lines = [f'Model: "{model.name}"'] + render_table(header, align, widths, line_length, rows)
    lines += _footer(model)
    return "\n".join(lines) + "\n"


def _rows_source(model) -> tuple[list[Layer], set[int] | None]:
    """The layers to list, and the calls that belong to the model (None: print it as a stack).

    As in Keras, a functional model whose calls form a single chain prints like a Sequential
    one (with its InputLayer rows), without the "Connected to" column."""
    from nncompile.keras.models import Sequential

    if isinstance(model, Sequential):
        return model.layers, None
    by_depth = list(model._nodes_by_depth.values())
    chain = all(len(nodes) == 1 and len(nodes[0].inputs) <= 1 for nodes in by_depth)
    nodes = {id(node) for nodes in by_depth for node in nodes}
    rows = model.operations   # Keras lists the op calls (`x + y`) too
    shared = any(sum(id(n) in nodes for n in layer._inbound_nodes) > 1 for layer in rows)
    if chain and not shared:
        return rows, None
    return rows, nodes


def _column_widths(positions: Sequence[float], line_length: int) -> list[int]:
    # Positions up to 1 are fractions of the line; larger ones are columns, as Keras 2 took them.
    stops = [int(p * line_length) if positions[-1] <= 1 else int(p) for p in positions]
    widths = [stop - start for start, stop in zip([0] + stops, stops)]
    if any(w < 4 for w in widths):
        raise ValueError("Insufficient console width to print summary.")
    return widths


def _layer_rows(layer: Layer, relevant: set[int] | None, expand_nested: bool,
                show_trainable: bool, level: int) -> list[list[str]]:
    prefix = "   " * level + "└ " if level else ""
    if not layer.built:
        params = "0 (unbuilt)"
    else:
        params = f"{layer.count_params():,}"
    row = [f"{prefix}{layer.name} ({type(layer).__name__})", _output_shape(layer), params]
    if relevant is not None:
        row.append(_connections(layer, relevant))
    if show_trainable:
        row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
    rows = [row]
    nested = getattr(layer, "layers", None) if expand_nested else None
    for inner in nested or []:
        rows += _layer_rows(inner, relevant, expand_nested, show_trainable, level + 1)
    return rows


def _format_shape(shape) -> str:
    return f"({', '.join(str(d) for d in shape)})"


def _output_shape(layer: Layer) -> str:
    """The output shape(s) of the layer's last call; "?" before it was ever called."""
    if not layer._inbound_nodes:
        return "?"
    shapes = [_format_shape(t.shape) for t in layer._inbound_nodes[-1].outputs]
    return shapes[0] if len(shapes) == 1 else f"[{', '.join(shapes)}]"


def _connections(layer: Layer, relevant: set[int]) -> str:
    """`producer[call index][output index]` for every input of the layer's calls in the model."""
    parts = []
    for node in layer._inbound_nodes:
        if id(node) not in relevant:
            continue
        for t in node.inputs:
            source = t.history.layer
            parts.append(f"{source.name}[{source._inbound_nodes.index(t.history)}][{t.index}]")
    return ", ".join(parts) or "-"


def _footer(model) -> list[str]:
    """Keras 3's counts: a compiled model whose optimizer is built (after `fit`) also counts the
    optimizer's variables (its iteration, learning rate and slots), in the total too."""
    trainable, frozen = model.trainable_weights, model.non_trainable_weights
    optimizer = getattr(model, "optimizer", None)
    state = [value for _, value in optimizer_variables(optimizer)] if getattr(optimizer, "built", False) else []
    counts = [_count(trainable) + _count(frozen) + _count(state), _count(trainable), _count(frozen), _count(state)]
    sizes = [_bytes(trainable + frozen) + _bytes(state), _bytes(trainable), _bytes(frozen), _bytes(state)]
    labels = ["Total params", "Trainable params", "Non-trainable params", "Optimizer params"]
    return [f" {label}: {count:,} ({readable_size(size)})"
            for label, count, size in zip(labels, counts, sizes) if label != labels[-1] or state]


def _count(weights) -> int:
    return int(sum(np.prod(w.shape, dtype=np.int64) for w in weights))


def _bytes(weights) -> float:
    unique = {id(w): w for w in weights}.values()
    return float(sum(np.prod(w.shape, dtype=np.int64) * np.dtype(w.dtype).itemsize for w in unique))


def readable_size(size: float) -> str:
    """`27.79 KB`: two decimals, in the largest unit of 1024 that keeps the number >= 1."""
    for unit in _UNITS:
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} {_UNITS[-1]}"


# --- the table, as rich draws it ----------------------------------------------------------------

def render_table(header: Sequence[str], align: Sequence[str], widths: Sequence[int],
                 line_length: int, rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a heavy-head box table with a rule between rows, `line_length` wide."""
    cells = _fit(widths, line_length)
    inner = [w - 2 for w in cells]
    lines = ["┏" + "┳".join("━" * w for w in cells) + "┓"]
    lines += _row_lines(header, align, inner, "┃")
    lines.append("┡" + "╇".join("━" * w for w in cells) + "┩")
    for i, row in enumerate(rows):
        if i:
            lines.append("├" + "┼".join("─" * w for w in cells) + "┤")
        lines += _row_lines(row, align, inner, "│")
    lines.append("└" + "┴".join("─" * w for w in cells) + "┘")
    return lines


def _fit(widths: Sequence[int], line_length: int) -> list[int]:
    """Cell widths: each column's width plus its padding of 1 on each side, then, as rich does
    for fixed-width columns, the excess over the line (less the borders) taken evenly."""
    cells = [w + 2 for w in widths]
    excess = sum(cells) - (line_length - len(cells) - 1)
    if excess <= 0:
        return cells
    out, remaining = [], len(cells)
    for w in cells:
        cut = min(w, round(excess / remaining))
        out.append(w - cut)
        excess -= cut
        remaining -= 1
    return out


def _row_lines(cells: Sequence[str], align: Sequence[str], widths: Sequence[int],
               bar: str) -> list[str]:
    wrapped = [_wrap(text, w, a) for text, w, a in zip(cells, widths, align)]
    height = max(len(lines) for lines in wrapped)
    out = []
    for i in range(height):
        parts = [lines[i] if i < len(lines) else " " * w for lines, w in zip(wrapped, widths)]
        out.append(bar + bar.join(f" {p} " for p in parts) + bar)
    return out


def _wrap(text: str, width: int, align: str) -> list[str]:
    """rich's wrapping without folding: break between words; a word longer than the column
    gets a line of its own, cut to the width with a trailing "…"."""
    lines = []
    for paragraph in text.split("\n"):
        for piece in _divide(paragraph, width):
            lines.append(_justify(_rstrip_end(piece, width), width, align))
    return lines


def _divide(text: str, width: int) -> list[str]:
    breaks, offset = [], 0
    start = 0
    while start < len(text):
        end = _word_end(text, start)
        word = text[start:end]
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width or offset:
            if start:
                breaks.append(start)
            offset = len(word)
        start = end
    bounds = [0] + breaks + [len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def _word_end(text: str, start: int) -> int:
    """End of the word at `start`: leading spaces, the word, and the spaces after it."""
    i = start
    while i < len(text) and text[i].isspace():
        i += 1
    while i < len(text) and not text[i].isspace():
        i += 1
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _rstrip_end(line: str, width: int) -> str:
    """Drop trailing spaces, but only those past the width."""
    excess = len(line) - width
    if excess <= 0:
        return line
    spaces = len(line) - len(line.rstrip())
    return line[:len(line) - min(spaces, excess)]


def _truncate(line: str, width: int) -> str:
    return line[:width - 1] + "…" if len(line) > width else line


def _justify(line: str, width: int, align: str) -> str:
    if align == "left":
        return _truncate(line, width).ljust(width)
    line = _truncate(line.rstrip(), width)
    if align == "right":
        return line.rjust(width)
    left = (width - len(line)) // 2
    return (" " * left + line).ljust(width)
