"""Attention layers: MultiHeadAttention and Attention (dot-product or concat scores), as Keras 3.

Both are written as Keras's `call` with keras.ops (traced into the IR). Their calls take tensors
by keyword (`mha(query, value, key=k, attention_mask=m)`), which nncompile's layers receive as one
list of inputs: `KeywordCall` packs the tensors given into that list, in a fixed order, and keeps
their names and the call's flags (`use_causal_mask`, `return_attention_scores`) to unpack them
when the call is traced and to write the call into a model config as Keras 3 does.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from nncompile.keras import constraints, initializers, ops, regularizers
from nncompile.keras.layers.arguments import (ArgumentError, boolean, integer, number, owner_of,
                                              positive_int, weight_options)
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.core import Dropout

# What Keras's masked softmax puts in place of a masked-out score.
LARGE_NEGATIVE = -1e9


class CallOptions(NamedTuple):
    """One call's keyword tensors (their names, in input order) and flags."""

    names: tuple[str, ...]
    flags: tuple[tuple[str, bool], ...]


class KeywordCall(Layer):
    """A layer whose call takes several tensors by keyword and flags that change what it
    computes. The flags are fixed per layer in a functional model: its calls are traced when the
    model is, and all of them use the options recorded here."""

    checks_call_arguments = True
    _options: CallOptions | None = None

    def _call_with(self, tensors: dict[str, Any], flags: dict[str, bool], training):
        owner = owner_of(self)
        given = {name: t for name, t in tensors.items() if t is not None}
        options = CallOptions(tuple(given),
                              tuple((k, boolean(v, k, owner)) for k, v in flags.items()))
        if self._inbound_nodes and self._options != options:
            raise ValueError(f"{owner} is called in a functional model with {_described(options)}, "
                             f"but an earlier call had {_described(self._options)}; nncompile "
                             f"keeps one set of call arguments per layer: use a second layer")
        self._options = options
        return Layer.__call__(self, list(given.values()), training=training)

    def flag(self, name: str) -> bool:
        return dict(self._options.flags)[name]

    def named(self, values: list) -> dict[str, Any]:
        """The call's inputs (or their masks) by name."""
        return dict(zip(self._options.names, values or [None] * len(self._options.names)))


def _described(options: CallOptions) -> str:
    flags = ", ".join(f"{k}={v}" for k, v in options.flags)
    return f"tensors ({', '.join(options.names)}) and {flags}"


def causal_mask(query, value):
    """(batch, T, S) bool: query step t sees value steps s <= t. Built from cumulative sums of
    ones shaped like the inputs, as Keras does, so a symbolic sequence length works too."""
    rows = ops.cumsum(ops.ones_like(query[:, :, 0], dtype="int32"), axis=1)
    cols = ops.cumsum(ops.ones_like(value[:, :, 0], dtype="int32"), axis=1)
    return ops.greater_equal(ops.expand_dims(rows, 2), ops.expand_dims(cols, 1))


def _both(a, b):
    return b if a is None else a if b is None else ops.logical_and(a, b)


def _bool(mask):
    return None if mask is None else ops.cast(mask, "bool")


def _check_rank_3(layer: Layer, shapes: dict[str, tuple]) -> None:
    for name, shape in shapes.items():
        if name.endswith("mask"):
            continue
        if len(shape) != 3:
            raise ValueError(f"{owner_of(layer)}: nncompile supports `{name}` of shape (batch, "
                             f"steps, features); received shape {tuple(shape)}")


# --- MultiHeadAttention -------------------------------------------------------------------------

class Projection(Layer):
    """One of MultiHeadAttention's projections (Keras makes them EinsumDense layers): `einsum(
    equation, x, kernel) + bias`; its owner makes the kernel and bias, in the shapes Keras 3
    saves."""

    supports_masking = True   # (the owner reads its inputs' masks itself)

    def __init__(self, equation: str, name: str, dtype: str):
        super().__init__(name=name, dtype=dtype)
        self.equation = equation
        self.kernel = self.bias = None
        self.built = True

    def call(self, inputs):
        y = ops.einsum(self.equation, inputs, self.kernel)
        return y if self.bias is None else y + self.bias


class MultiHeadAttention(KeywordCall):
    """Multi-head attention, Keras 3's: `num_heads` heads, each projecting the query and key to
    `key_dim` and the value to `value_dim` features; the heads' results are projected back to the
    query's features (or `output_shape`).

    Called as `mha(query, value, key=None, attention_mask=None, return_attention_scores=False,
    training=None, use_causal_mask=False)` on (batch, steps, features) tensors. Keras masks on the
    inputs (from `Embedding(mask_zero=True)`) restrict the attention as in Keras.

    Example:

    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> MultiHeadAttention(num_heads=2, key_dim=4)(x, x).shape
    (2, 5, 8)
    """

    supports_masking = True   # the output carries the query's mask
    clears_input_masks = True

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None,
                 dropout: float = 0.0, use_bias: bool = True, output_shape=None,
                 attention_axes=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, seed: int | None = None,
                 use_gate: bool = False, sliding_window: int | None = None,
                 flash_attention=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.num_heads = positive_int(num_heads, "num_heads", owner)
        self.key_dim = positive_int(key_dim, "key_dim", owner)
        self.value_dim = self.key_dim if value_dim is None else positive_int(value_dim, "value_dim", owner)
        self.dropout = number(dropout, "dropout", owner, "a float between 0 and 1", lambda v: 0 <= v <= 1)
        self.use_bias = boolean(use_bias, "use_bias", owner)
        self.output_shape = _output_shape(output_shape, owner)
        self.attention_axes = _attention_axes(attention_axes, owner)
        self.seed = None if seed is None else integer(seed, "seed", owner)
        _refuse_unless(owner, use_gate=(use_gate, False), sliding_window=(sliding_window, None),
                       flash_attention=(flash_attention, (None, False)))
        weight_options(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        weight_options(self, "bias", bias_initializer, bias_regularizer, bias_constraint)
        self._dropout_layer = Dropout(self.dropout, seed=self.seed)

    def __call__(self, query, value, key=None, attention_mask=None,
                 return_attention_scores: bool = False, training: bool | None = None,
                 use_causal_mask: bool = False):
        outputs = self._call_with({"query": query, "value": value, "key": key,
                                   "attention_mask": attention_mask},
                                  {"return_attention_scores": return_attention_scores,
                                   "use_causal_mask": use_causal_mask}, training)
        for tensor in (query, value, key, attention_mask):
            if hasattr(tensor, "_keras_mask"):   # symbolic or traced tensors, as in Keras
                tensor._keras_mask = None
        return outputs

    def build(self, input_shape) -> None:
        shapes = self.named(input_shape)
        _check_rank_3(self, shapes)
        query, value = shapes["query"], shapes["value"]
        key = shapes.get("key", value)
        if key[1] != value[1]:
            raise ValueError(f"{owner_of(self)}: all dimensions of `value` and `key`, except the "
                             f"last one, must be equal. Received: value_shape={tuple(value)} and "
                             f"key_shape={tuple(key)}")
        heads, out = self.num_heads, self.output_shape or (query[-1],)
        self._hold_projections(query[-1], key[-1], value[-1], heads, heads, self.value_dim, tuple(out))
        self.built = True

    # The attributes holding the projections, named and ordered as Keras 3's: the files address
    # the weights by them.
    projection_names = ("query_dense", "key_dense", "value_dense", "output_dense")

    def _hold_projections(self, query: int, key: int, value: int, heads: int, kv_heads: int, value_dim: int,
                          out: tuple) -> None:
        bias = self.use_bias
        projections = [
            self._projection("abc,cde->abde", (query, heads, self.key_dim), (heads, self.key_dim) if bias else None,
                             "query"),
            self._projection("abc,cde->abde", (key, kv_heads, self.key_dim), (kv_heads, self.key_dim) if bias
                             else None, "key"),
            self._projection("abc,cde->abde", (value, kv_heads, value_dim), (kv_heads, value_dim) if bias else None,
                             "value"),
            self._projection("abcd,cde->abe", (heads, value_dim, *out), out if bias else None, "attention_output")]
        for name, layer in zip(self.projection_names, projections):
            setattr(self, name, layer)
            self.__dict__.setdefault("_tracked", {})[name] = layer     # held under Keras's name, "_" or not

    def projection(self, kind: int):
        """The query (0), key (1), value (2) or output (3) projection."""
        return getattr(self, self.projection_names[kind])

    def _projection(self, equation: str, kernel: tuple, bias: tuple | None, name: str) -> Projection:
        """A projection whose weights, with this layer's initializers and penalties, sit under
        this layer's path (`multi_head_attention/query/kernel`), as in Keras."""
        if len(kernel) > 3:
            raise ValueError(f"{owner_of(self)}: nncompile supports an `output_shape` of one "
                             f"dimension; received output_shape={self.output_shape}")
        layer = Projection(equation, name, self.dtype)
        self.adopt(layer)
        for kind, shape in (("kernel", kernel), ("bias", bias)):
            if shape is not None:
                setattr(layer, kind, layer.add_weight(
                    shape=shape, name=kind, initializer=getattr(self, f"{kind}_initializer"),
                    regularizer=getattr(self, f"{kind}_regularizer"),
                    constraint=getattr(self, f"{kind}_constraint")))
        return layer

    def call(self, inputs, mask=None, training=False):
        given, masks = self.named(inputs), self.named(mask)
        query, value = given["query"], given["value"]
        key = given.get("key", value)
        keep = self._attention_mask(query, value, given.get("attention_mask"), masks)
        q = self.projection(0)(query) * (1.0 / math.sqrt(self.key_dim))
        k, v = self.project_key_value(key, value)
        scores = ops.einsum("aecd,abcd->acbe", k, q)              # (batch, heads, T, S)
        if keep is not None:
            keep = ops.expand_dims(keep, 1)
            scores = ops.where(keep, scores, LARGE_NEGATIVE)
        scores = ops.softmax(scores, axis=-1)
        if keep is not None and (self.dropout > 0 or self.flag("return_attention_scores")):
            # Keras computes these cases with its masked Softmax, which gives a query step
            # that may see nothing zero weights; otherwise its fused attention, which gives
            # such a step the same weight everywhere (as the softmax above does).
            scores = ops.where(keep, scores, 0.0)
        attended = ops.einsum("acbe,aecd->abcd", self._dropout_layer(scores, training=training), v)
        output = self.projection(3)(attended)
        return (output, scores) if self.flag("return_attention_scores") else output

    def project_key_value(self, key, value):
        """The projected keys and values, (batch, steps, heads, dim) each."""
        return self.projection(1)(key), self.projection(2)(value)

    def _attention_mask(self, query, value, attention_mask, masks: dict):
        """(batch, T, S) bool, or None: the given mask and-ed with the inputs' Keras masks
        (query steps as rows, value and key steps as columns) and the causal mask."""
        keep = _bool(attention_mask)
        if masks.get("query") is not None:
            keep = _both(keep, ops.expand_dims(_bool(masks["query"]), -1))
        for name in ("value", "key"):
            if masks.get(name) is not None:
                keep = _both(keep, ops.expand_dims(_bool(masks[name]), -2))
        if self.flag("use_causal_mask"):
            keep = _both(keep, causal_mask(query, value))
        return keep

    def compute_mask(self, inputs, mask=None):
        query_mask = self.named(mask).get("query")
        return [query_mask, None] if self.flag("return_attention_scores") else query_mask

    def call_arguments(self, inputs: list, single: bool) -> tuple[list, dict]:
        given = self.named(inputs)
        tensors = {k: given[k] for k in ("key", "attention_mask") if k in given}
        return [given["query"], given["value"]], {**tensors, **dict(self._options.flags)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
                "output_shape": self.output_shape, "attention_axes": self.attention_axes,
                "use_gate": False, "sliding_window": None, "seed": self.seed,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint)}


def _output_shape(value, owner: str) -> tuple[int, ...] | None:
    if value is None or value == () or value == []:
        return None
    dims = (value,) if isinstance(value, int) else value
    if not isinstance(dims, (list, tuple)):
        raise ArgumentError(f"{owner}: the `output_shape` argument must be an int, a tuple or a "
                            f"list. Received: output_shape={value!r}")
    return tuple(positive_int(d, "output_shape", owner) for d in dims)


def _attention_axes(value, owner: str) -> list[int] | None:
    """None, or the attention over the steps axis that rank-3 inputs have: (1,) or (-2,) (axis
    -1 of the projected (batch, steps, heads, dim) tensor is the features). Other axes would
    attend over several axes of higher-rank inputs, which nncompile does not implement."""
    if value is None:
        return None
    axes = [value] if isinstance(value, int) else list(value) if isinstance(value, (list, tuple)) else None
    if axes is None:
        raise ArgumentError(f"{owner}: `attention_axes` must be an int, list, or tuple. "
                            f"Received: attention_axes={value!r}")
    if axes not in ([1], [-2]):
        raise ArgumentError(f"{owner}: nncompile supports attention over the steps axis only "
                            f"(attention_axes=None, 1 or -2, for (batch, steps, features) "
                            f"inputs). Received: attention_axes={value!r}")
    return [1]


def _refuse_unless(owner: str, **arguments) -> None:
    """An error naming the first argument whose value is not its supported one."""
    for name, (value, supported) in arguments.items():
        allowed = supported if isinstance(supported, tuple) else (supported,)
        if value not in allowed:
            raise ArgumentError(f"{owner}: nncompile does not implement `{name}`; it must be "
                                f"{allowed[0]!r}. Received: {name}={value!r}")


# --- Attention ----------------------------------------------------------------------------------

class Attention(KeywordCall):
    """Dot-product attention, Keras 3's `keras.layers.Attention`: called on [query, value] or
    [query, value, key] of shapes (batch, Tq, dim), (batch, Tv, dim), it gives (batch, Tq, dim):
    softmax(scores(query, key)) @ value, where scores are `query @ key^T` (score_mode "dot") or
    `sum(tanh(query + key))` (score_mode "concat"), times a trained scalar if `use_scale`.

    `mask=[query_mask, value_mask]` (or the inputs' Keras masks) leave out value steps and zero
    output steps; `use_causal_mask=True` lets step t see value steps <= t only.

    Example:

    >>> q = np.random.rand(2, 3, 4).astype("float32")
    >>> Attention()([q, np.random.rand(2, 5, 4).astype("float32")]).shape
    (2, 3, 4)
    """

    supports_masking = True

    def __init__(self, use_scale: bool = False, score_mode: str = "dot", dropout: float = 0.0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.use_scale = boolean(use_scale, "use_scale", owner)
        if score_mode not in ("dot", "concat"):
            raise ArgumentError(f"{owner}: invalid value for argument score_mode. Expected one of "
                                f"{{'dot', 'concat'}}. Received: score_mode={score_mode!r}")
        self.score_mode = score_mode
        self.dropout = number(dropout, "dropout", owner, "a float between 0 and 1", lambda v: 0 <= v <= 1)
        self.seed = None if seed is None else integer(seed, "seed", owner)
        self._dropout_layer = Dropout(self.dropout, seed=self.seed)

    def __call__(self, inputs, mask=None, training: bool | None = None,
                 return_attention_scores: bool = False, use_causal_mask: bool = False):
        owner = owner_of(self)
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(f"{owner} must be called on a list of inputs, namely [query, value] "
                             f"or [query, value, key]. Received: inputs={inputs!r}")
        if mask is not None and (not isinstance(mask, (list, tuple)) or len(mask) not in (2, 3)):
            raise ValueError(f"{owner}: the mask must be a list, namely [query_mask, value_mask]. "
                             f"Received: mask={mask!r}")
        masks = list(mask or ()) + [None] * 2
        tensors = {"query": inputs[0], "value": inputs[1],
                   "key": inputs[2] if len(inputs) == 3 else None,
                   "query_mask": masks[0], "value_mask": masks[1]}
        return self._call_with(tensors, {"return_attention_scores": return_attention_scores,
                                         "use_causal_mask": use_causal_mask}, training)

    def build(self, input_shape) -> None:
        _check_rank_3(self, self.named(input_shape))
        self.scale = (self.add_weight(shape=(), initializer="ones", name="scale")
                      if self.use_scale else None)
        self.concat_score_weight = (
            self.add_weight(shape=(), initializer="ones", name="concat_score_weight")
            if self.score_mode == "concat" else None)
        self.built = True

    def call(self, inputs, mask=None, training=False):
        given, masks = self.named(inputs), self.named(mask)
        query, value = given["query"], given["value"]
        key = given.get("key", value)
        query_mask = _bool(given.get("query_mask", masks.get("query")))
        value_mask = _bool(given.get("value_mask", masks.get("value")))
        scores = self._scores(query, key)
        keep = None if value_mask is None else ops.expand_dims(value_mask, -2)
        if self.flag("use_causal_mask"):
            keep = _both(keep, causal_mask(query, key))
        if keep is not None:
            # Keras subtracts rather than replaces: a fully masked row keeps its score order.
            scores = ops.where(keep, scores, scores + LARGE_NEGATIVE)
        weights = ops.softmax(scores, axis=-1)
        output = ops.matmul(self._dropout_layer(weights, training=training), value)
        if query_mask is not None:
            output = ops.where(ops.expand_dims(query_mask, -1), output, 0.0)
        return (output, weights) if self.flag("return_attention_scores") else output

    def _scores(self, query, key):
        if self.score_mode == "dot":
            scores = ops.matmul(query, ops.swapaxes(key, -2, -1))
            return scores if self.scale is None else scores * self.scale
        summed = ops.expand_dims(query, -2) + ops.expand_dims(key, -3)
        if self.scale is not None:
            summed = summed * self.scale
        return self.concat_score_weight * ops.sum(ops.tanh(summed), axis=-1)

    def compute_mask(self, inputs, mask=None):
        given, masks = self.named(inputs), self.named(mask)
        query_mask = given.get("query_mask", masks.get("query"))
        return [query_mask, None] if self.flag("return_attention_scores") else query_mask

    def call_arguments(self, inputs: list, single: bool) -> tuple[list, dict]:
        given = self.named(inputs)
        tensors = [given[k] for k in ("query", "value", "key") if k in given]
        kwargs = dict(self._options.flags)
        if "query_mask" in given or "value_mask" in given:
            kwargs["mask"] = [given.get("query_mask"), given.get("value_mask")]
        return [tensors], kwargs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "use_scale": self.use_scale,
                "score_mode": self.score_mode, "dropout": self.dropout, "seed": self.seed}


class AdditiveAttention(Attention):
    """Additive (Bahdanau-style) attention, Keras 3's `keras.layers.AdditiveAttention`: scores
    `sum(scale * tanh(query + key), axis=-1)` with a trained `scale` of the feature size (when
    `use_scale`, the default), then as `Attention`.

    Example:

    >>> q = np.random.rand(2, 3, 4).astype("float32")
    >>> AdditiveAttention()([q, np.random.rand(2, 5, 4).astype("float32")]).shape
    (2, 3, 4)
    """

    def __init__(self, use_scale: bool = True, dropout: float = 0.0, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape) -> None:
        shapes = self.named(input_shape)
        _check_rank_3(self, shapes)
        self.scale = (self.add_weight(shape=(shapes["query"][-1],), initializer="glorot_uniform", name="scale")
                      if self.use_scale else None)
        self.concat_score_weight = None
        self.built = True

    def _scores(self, query, key):
        summed = ops.tanh(ops.expand_dims(query, -2) + ops.expand_dims(key, -3))
        return ops.sum(summed if self.scale is None else self.scale * summed, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["score_mode"]
        return config


class GroupedQueryAttention(MultiHeadAttention):
    """Grouped-query attention, Keras 3's `keras.layers.GroupQueryAttention`: `num_query_heads`
    query heads of `head_dim` features share `num_key_value_heads` key and value heads (each
    serves num_query_heads / num_key_value_heads query heads); otherwise as MultiHeadAttention,
    with Keras 3's weights (`query/kernel` of shape (dim, num_query_heads, head_dim), `key` and
    `value` with num_key_value_heads) and configs.

    Example:

    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> GroupedQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)(x, x).shape
    (2, 5, 8)
    """

    def __init__(self, head_dim: int, num_query_heads: int, num_key_value_heads: int, dropout: float = 0.0,
                 use_bias: bool = True, sliding_window: int | None = None, flash_attention=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 use_gate: bool = False, seed: int | None = None, **kwargs):
        super().__init__(num_query_heads, head_dim, dropout=dropout, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                         bias_constraint=bias_constraint, seed=seed, use_gate=use_gate,
                         sliding_window=sliding_window, flash_attention=flash_attention, **kwargs)
        owner = owner_of(self)
        self.num_key_value_heads = positive_int(num_key_value_heads, "num_key_value_heads", owner)
        if self.num_heads % self.num_key_value_heads:
            raise ArgumentError(f"{owner}: `num_query_heads` must be divisible by `num_key_value_heads`.")

    projection_names = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
    config_class_name = "GroupQueryAttention"     # Keras's configs name it so, its weights' paths not

    @property
    def head_dim(self) -> int:
        return self.key_dim

    def build(self, input_shape) -> None:
        shapes = self.named(input_shape)
        _check_rank_3(self, shapes)
        query, value = shapes["query"], shapes["value"]
        key = shapes.get("key", value)
        if query[-1] != value[-1]:
            raise ValueError(f"{owner_of(self)}: the last dimension of `query_shape` and `value_shape` must be "
                             f"equal, but are {query[-1]}, {value[-1]}. Received: query_shape={tuple(query)}, "
                             f"value_shape={tuple(value)}")
        self._hold_projections(query[-1], key[-1], value[-1], self.num_heads, self.num_key_value_heads, self.key_dim,
                               (query[-1],))
        self.built = True

    def project_key_value(self, key, value):
        """Each key and value head repeated for the query heads it serves (Keras's ops.repeat)."""
        repeats = self.num_heads // self.num_key_value_heads
        k, v = super().project_key_value(key, value)
        return ops.repeat(k, repeats, axis=2), ops.repeat(v, repeats, axis=2)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for name in ("num_heads", "key_dim", "value_dim", "output_shape", "attention_axes"):
            del config[name]
        return {**config, "head_dim": self.key_dim, "num_query_heads": self.num_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "activity_regularizer": regularizers.serialize(self.activity_regularizer)}


GroupQueryAttention = GroupedQueryAttention     # the name keras.layers exports it under
