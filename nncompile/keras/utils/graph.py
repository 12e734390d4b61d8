"""`keras.utils.get_source_inputs`: the `Input` tensors a symbolic tensor is computed from."""
from __future__ import annotations


def get_source_inputs(tensor):
    """The list of `keras.Input` tensors that `tensor` (made by layer calls in the functional
    API) depends on, each once, in the order Keras finds them; a value that is not a symbolic
    tensor is returned as it is, as Keras does.

    >>> from nncompile import keras
    >>> a, b = keras.Input((2,)), keras.Input((2,))
    >>> out = keras.layers.Add()([a, keras.layers.Dense(2)(b)])
    >>> [t is a for t in get_source_inputs(out)]
    [True, False]
    """
    from nncompile.keras.layers.base import KerasTensor

    if not isinstance(tensor, KerasTensor):
        return tensor
    node = tensor.history
    if node is None:
        return [tensor]
    if not node.inputs:   # an Input: the graph starts here
        return list(node.outputs)
    sources: list = []
    for parent in node.inputs:
        for source in get_source_inputs(parent):
            if all(source is not known for known in sources):
                sources.append(source)
    return sources
