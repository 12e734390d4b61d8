"""`keras.ops`'s sub-namespaces as Keras 3 has them (names listed by real Keras in
tests/fixtures/keras/ops_names): an op nncompile defines is found in every namespace Keras puts
it in, as the same function."""
from __future__ import annotations

import json
import os

import pytest

from nncompile.keras import ops

with open(os.path.join(os.path.dirname(__file__), "..", "fixtures", "keras", "ops_names", "names.json")) as f:
    KERAS_NAMES = json.load(f)


@pytest.mark.parametrize("namespace", ["nn", "numpy"])
def test_an_op_is_found_in_each_namespace_keras_puts_it_in(namespace):
    space = getattr(ops, namespace)
    defined = [name for name in KERAS_NAMES[namespace] if hasattr(ops, name)]
    assert len(defined) > len(KERAS_NAMES[namespace]) * 0.8     # most of Keras's are there
    for name in defined:
        assert getattr(space, name) is getattr(ops, name), name


def test_a_name_no_namespace_has_is_refused_naming_it():
    with pytest.raises(AttributeError, match="module 'keras.ops.numpy' has no attribute 'nonesuch'"):
        ops.numpy.nonesuch
    with pytest.raises(AttributeError, match="'_private'"):
        ops.nn._private
