"""EinsumDense: a dense layer whose product is an einsum equation, as Keras 3's.

The equation names the input's axes, the kernel's and the output's: "ab,bc->ac" is a Dense
layer, "abc,cde->abde" projects each position's features to (heads, depth), and an ellipsis
stands for axes carried through, on the left ("...b,bc->...c") or on the right
("ab...,bc->ac..."; at least two named input axes). The kernel's shape is read off the
equation: each of its axes is an output axis (sized by `output_shape`, the output's shape
without the batch) or an input axis. `bias_axes` names the output axes a bias varies along; it
broadcasts over the rest, from the first of them to the end.

>>> EinsumDense("abc,cde->abde", output_shape=(5, 2, 3), bias_axes="de")(np.ones((4, 5, 8), "float32")).shape
(4, 5, 2, 3)
"""
from __future__ import annotations

import re
from typing import Any

from nncompile.ir import Builder, Value
from nncompile.keras import activations, initializers
from nncompile.keras.layers.arguments import owner_of, weight_configs, weight_options
from nncompile.keras.layers.base import Layer
from nncompile.keras.ops import linalg

# The equation's three forms, with "..." written 0: (pattern, the ellipsis on the left)
_FORMS = ((r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)", False),
          (r"0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)", True),
          (r"([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0", False))


def einsum_shapes(equation: str, bias_axes: str | None, input_shape, output_shape) -> tuple:
    """(kernel shape, bias shape or None, full output shape, the kernel's input axes, its output
    axes) of EinsumDense(equation, output_shape, bias_axes=bias_axes) on `input_shape`."""
    written = equation.replace("...", "0")
    for pattern, left in _FORMS:
        found = re.match(pattern, written)
        if found:
            return _shapes(*found.groups(), left, bias_axes, tuple(input_shape), output_shape)
    raise ValueError(f"Invalid einsum equation '{equation}'. Equations must be in the form "
                     "[X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]....")


def _shapes(input_spec: str, weight_spec: str, output_spec: str, left: bool, bias_axes: str | None,
            input_shape: tuple, output_shape) -> tuple:
    elided = len(input_shape) - len(input_spec)
    output = [output_shape] if isinstance(output_shape, int) else list(output_shape)
    output.insert(0, input_shape[0])
    if elided > 0 and left:
        output[1:1] = input_shape[1:elided]
    elif elided > 0:
        output += input_shape[len(input_shape) - elided:]
    shift = elided if left else 0
    input_at = {d: i + shift - (len(input_shape) if left else 0) for i, d in enumerate(input_spec)}
    output_at = {d: i + shift for i, d in enumerate(output_spec)}
    for d in input_spec:
        if d in output_at and output[output_at[d]] is not None and output[output_at[d]] != input_shape[input_at[d]]:
            raise ValueError(f"Input shape and output shape do not match at shared dimension '{d}'. Input "
                             f"shape is {input_shape[input_at[d]]}, and output shape is {output[output_at[d]]}.")
    for d in output_spec:
        if d not in input_spec and d not in weight_spec:
            raise ValueError(f"Dimension '{d}' was specified in the output '{output_spec}' but has no "
                             f"corresponding dim in the input spec '{input_spec}' or weight spec '{output_spec}'")
    kernel, input_axes, output_axes = [], [], []
    for i, d in enumerate(weight_spec):
        if d in output_at:
            kernel.append(output[output_at[d]])
            output_axes.append(i)
        elif d in input_at:
            kernel.append(input_shape[input_at[d]])
            input_axes.append(i)
        else:
            raise ValueError(f"Weight dimension '{d}' did not have a match in either the input spec "
                             f"'{input_spec}' or the output spec '{output_spec}'. For this layer, the "
                             "weight must be fully specified.")
    bias = None
    if bias_axes is not None:
        for d in bias_axes:
            if d not in output_spec:
                raise ValueError(f"Bias dimension '{d}' was requested, but is not part of the output "
                                 f"spec '{output_spec}'")
        first = min(output_spec.find(d) for d in bias_axes)
        bias = [output[output_at[d]] if d in bias_axes else 1 for d in output_spec[first:]]
        bias += [] if left else [1] * elided
    return kernel, bias, output, input_axes, output_axes


class EinsumDense(Layer):
    """`activation(einsum(equation, inputs, kernel) + bias)`: see the module's docstring. As in
    Keras, it does not pass a mask on."""

    def __init__(self, equation, output_shape, activation=None, bias_axes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, bias_constraint=None, lora_rank=None,
                 lora_alpha=None, gptq_unpacked_column_size=None, quantization_config=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        if not isinstance(equation, str):
            raise ValueError(f"{owner}: the `equation` argument must be a string. Received: equation={equation!r}")
        for arg, value in (("lora_rank", lora_rank), ("gptq_unpacked_column_size", gptq_unpacked_column_size),
                           ("quantization_config", quantization_config)):
            if value:
                raise NotImplementedError(f"{owner}: `{arg}` is not supported by nncompile")
        self.equation = equation
        self.partial_output_shape = (output_shape,) if isinstance(output_shape, int) else tuple(output_shape)
        self.bias_axes = bias_axes
        self.activation = activations.get(activation)
        weight_options(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        weight_options(self, "bias", bias_initializer, bias_regularizer, bias_constraint)

    def build(self, input_shape) -> None:
        kernel, bias, _, input_axes, output_axes = einsum_shapes(self.equation, self.bias_axes, input_shape,
                                                                self.partial_output_shape)
        initializer = self.kernel_initializer
        if isinstance(initializer, initializers.VarianceScaling) and \
                (initializer.input_axes is None or initializer.output_axes is None):
            # as Keras: its fans are the products of the kernel's input and output axes
            initializer = type(initializer).from_config({**initializer.get_config(), "input_axes": input_axes,
                                                         "output_axes": output_axes})
        self.kernel = self.add_weight(shape=tuple(kernel), initializer=initializer, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint, name="kernel")
        self.bias = None if bias is None else self.add_weight(
            shape=tuple(bias), initializer=self.bias_initializer, regularizer=self.bias_regularizer,
            constraint=self.bias_constraint, name="bias")
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(einsum_shapes(self.equation, self.bias_axes, input_shape, self.partial_output_shape)[2])

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        y = linalg.einsum.__wrapped__(b, self.equation, inputs, self.param(b, self.kernel))
        if self.bias is not None:
            y = b.add(y, self.param(b, self.bias))
        return self.activation(b, y)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_shape": self.partial_output_shape, "equation": self.equation,
                "activation": activations.serialize(self.activation), "bias_axes": self.bias_axes,
                **weight_configs(self, "kernel", "bias"), "quantization_config": None}
