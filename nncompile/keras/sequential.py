"""`Sequential`: a linear stack of layers, a Model whose graph grows as layers are added."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from nncompile.keras import streaming
from nncompile.keras.functional import config_list, deserialize_layer, serialize_model_layer
from nncompile.keras.input_layer import InputLayer
from nncompile.keras.layers.base import KerasTensor, Layer
from nncompile.keras.model import Model

__all__ = ["Sequential"]


class Sequential(Model):
    """A linear stack of layers.

    Without an input shape (no `Input` first, no `input_shape=` on the first layer) the model
    is built on the first call or predict, from the shape of the data.

    Example:

    >>> from nncompile.keras import Input, layers
    >>> model = Sequential([Input(shape=(16,)), layers.Dense(8, activation="relu")])
    >>> model.add(layers.Dense(4))
    >>> model.output_shape
    (None, 4)
    """

    def __init__(self, layers: Sequence[Layer] | None = None, trainable: bool = True,
                 name: str | None = None):
        super().__init__(name=name, trainable=trainable)
        self._layers: list[Layer] = []
        self._tensors: list[KerasTensor] = []  # the output of each layer, once the input is known
        self.built = False
        if layers is not None and not isinstance(layers, (list, tuple)):
            raise ValueError(f"Sequential model '{self.name}': `layers` must be a list of layers. "
                             f"Received: {layers!r}")
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self) -> list[Layer]:
        # As in Keras, the InputLayer at the bottom of the stack is not listed.
        has_input = self._layers and isinstance(self._layers[0], InputLayer)
        return self._layers[1:] if has_input else list(self._layers)

    def _weight_layers(self) -> list[Layer]:
        return self._layers

    def add(self, layer: Layer | KerasTensor) -> None:
        """Add `layer` on top of the stack (an `Input(...)` tensor is taken as its InputLayer)."""
        if isinstance(layer, KerasTensor) and layer.history is not None:
            layer = layer.history.layer
        if not isinstance(layer, Layer):
            raise ValueError(f"Only instances of `keras.Layer` can be added to a Sequential model. "
                             f"Received: {layer!r} (of type {type(layer)})")
        if not self._layers and not isinstance(layer, InputLayer) and layer.batch_input_shape:
            self.add(InputLayer(batch_shape=layer.batch_input_shape))
        self._check_addable(layer)
        if self._tensors:
            self._tensors.append(self._call_on_top(layer))
        elif isinstance(layer, InputLayer):
            self._tensors.append(layer.output)
        self._layers.append(layer)
        self._refresh()

    def _check_addable(self, layer: Layer) -> None:
        if any(other.name == layer.name and other is not layer for other in self._layers):
            raise ValueError(f"All layers added to a Sequential model should have unique names. "
                             f"Name '{layer.name}' is already the name of a layer in this model. "
                             f"Update the `name` argument to pass a unique name.")
        if isinstance(layer, InputLayer) and self._layers:
            first = self._layers[0]
            shape = first.batch_shape if isinstance(first, InputLayer) else None
            raise ValueError(f"Sequential model '{self.name}' has already been configured "
                             + (f"to use input shape {shape}. " if shape else "with layers. ")
                             + "You cannot add a different Input layer to it.")

    def _call_on_top(self, layer: Layer) -> KerasTensor:
        below = self._layers[-1]
        x = self._tensors[-1]
        try:
            out = layer(x)
        except ValueError as e:
            # Shape errors already say "Layer 'x' (X) cannot be applied to ...": keep the cause.
            cause = str(e).removeprefix(f"{layer._describe_call([x])}: ")
            raise ValueError(f"Sequential model '{self.name}': layer '{layer.name}' "
                             f"({type(layer).__name__}) cannot be added after layer '{below.name}' "
                             f"({type(below).__name__}), whose output shape is {x.shape}: "
                             f"{cause}") from None
        if not isinstance(out, KerasTensor):
            raise ValueError(f"All layers in a Sequential model should have a single output "
                             f"tensor; layer '{layer.name}' has {len(out)}. For multi-output "
                             f"layers, use the functional API.")
        return out

    def pop(self) -> Layer:
        """Remove the top layer and return it."""
        if not self.layers:
            raise TypeError(f"Sequential model '{self.name}': there are no layers in the model.")
        layer = self._layers.pop()
        del self._tensors[len(self._layers):]
        self._refresh()
        return layer

    def _refresh(self) -> None:
        self._graphs.clear()
        if self._tensors:
            self._set_graph(self._tensors[0], self._tensors[-1])
        else:
            self.built = False

    def build(self, input_shape: Sequence[int | None] | None = None) -> None:
        """Build the stack for inputs of `input_shape` (batch first, None for the batch)."""
        if not self._layers:
            raise ValueError(f"Sequential model {self.name} cannot be built because it has no "
                             f"layers. Call `model.add(layer)`.")
        if self._tensors:
            configured = self._layers[0].batch_shape
            if input_shape is not None and tuple(input_shape) != configured:
                raise ValueError(f"Sequential model '{self.name}' has already been configured to "
                                 f"use input shape {configured}. You cannot build it with "
                                 f"input_shape {tuple(input_shape)}")
            return
        if input_shape is None or not isinstance(input_shape, (tuple, list)) or (
                input_shape and isinstance(input_shape[0], (tuple, list))):
            raise ValueError(f"Sequential model '{self.name}' takes one input: build it with a "
                             f"shape such as (None, 8). Received: input_shape={input_shape!r}")
        stack, self._layers = self._layers, []
        try:
            for layer in [InputLayer(batch_shape=input_shape, dtype=stack[0].dtype)] + stack:
                self.add(layer)
        except ValueError:
            self._layers, self._tensors = stack, []
            self._refresh()
            raise
        self._compile_pending()

    def _builds_from_data(self) -> bool:
        return bool(self._layers)

    def _build_for(self, x) -> None:
        """Build the stack from the shape of its first data (arrays), as Keras does."""
        if not self.built and self._layers and x is not None and not streaming.is_stream(x):
            self.build((None,) + _data_shape(self.name, x)[1:])

    def _standardize(self, x) -> list[np.ndarray]:
        self._build_for(x)
        return super()._standardize(x)

    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype,
                  "layers": [serialize_model_layer(layer) for layer in self._layers]}
        if self.built:
            config["build_input_shape"] = list(self._layers[0].batch_shape)
        return config

    @classmethod
    def from_config(cls, config, custom_objects: Mapping[str, type] | None = None) -> "Sequential":
        # Keras 1 configs are the bare list of layer configs.
        if isinstance(config, list):
            config = {"layers": config}
        layers = config_list(config, "layers", f"Model '{config.get('name')}' (Sequential)")
        # As Keras 3: the model's own flag is not read back (its layers keep theirs)
        model = cls(name=config.get("name"))
        for layer_config in layers:
            model.add(deserialize_layer(layer_config, custom_objects))
        if not model.built and config.get("build_input_shape"):
            model.build(config["build_input_shape"])
        return model


def _data_shape(model: str, x) -> tuple[int, ...]:
    """The shape of the single array a Sequential model is called on, to build it from."""
    if isinstance(x, Mapping) or (isinstance(x, (list, tuple)) and len(x) == 1
                                  and isinstance(x[0], np.ndarray)):
        x = next(iter(x.values())) if isinstance(x, Mapping) else x[0]
    try:
        shape = np.shape(x)
    except (TypeError, ValueError) as e:
        raise ValueError(f'Sequential model "{model}" cannot be built from the data: {e}') from None
    if not shape:
        raise ValueError(f'Sequential model "{model}" cannot be built from a scalar; expected a '
                         f"batch of samples (an array with a first, batch dimension)")
    return tuple(shape)
