"""`keras.tree`: nested structures (lists, tuples, dicts, namedtuples, ...) as Keras 3 walks them.

Keras 3 delegates to optree with None as a leaf; this module follows the same rules without it:
lists, tuples, namedtuples, struct sequences (`time.struct_time`), `collections.deque` and
dicts (`dict` and `defaultdict` by sorted key, `OrderedDict` in its own order) are nested; every
other object, subclasses of list, tuple or dict included, is a leaf. A rebuilt dict keeps the
insertion order of the dict it copies. Mismatched structures raise optree's ValueErrors.

>>> from nncompile.keras import tree
>>> tree.flatten({"b": [1, 2], "a": 3})
[3, 1, 2]
>>> tree.map_structure(lambda v: v * 10, {"b": [1, 2], "a": 3})
{'b': [10, 20], 'a': 30}
"""
from __future__ import annotations

import collections
import warnings
from typing import Any, Callable

__all__ = ["MAP_TO_NONE", "assert_same_paths", "assert_same_structure", "flatten", "flatten_with_path",
           "is_nested", "lists_to_tuples", "map_shape_structure", "map_structure", "map_structure_up_to",
           "pack_sequence_as", "traverse"]

_DICTS = (dict, collections.OrderedDict, collections.defaultdict)
_SAME = "Structures don't have the same nested structure."


class MAP_TO_NONE:
    """Returned by a `traverse` function to put None in place of a sub-structure (returning
    None itself means "leave it")."""


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields") and hasattr(type(x), "_make")


def _is_structseq(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "n_sequence_fields")


def _sorted_keys(d) -> list:
    """optree's total order: plain sort, else by (type's full name, key), else insertion order."""
    keys = list(d)
    if type(d) is collections.OrderedDict:
        return keys
    try:
        return sorted(keys)
    except TypeError:
        pass
    try:
        return sorted(keys, key=lambda k: (f"{type(k).__module__}.{type(k).__qualname__}", k))
    except TypeError:
        return keys


def _kind(x, none_is_leaf: bool = True) -> str | None:
    """The node kind of `x`, or None for a leaf. Types are looked up exactly, as optree does."""
    if x is None:
        return None if none_is_leaf else "none"
    if type(x) in (list, tuple, collections.deque) or type(x) in _DICTS:
        return "dict" if type(x) in _DICTS else type(x).__name__
    if _is_namedtuple(x):
        return "namedtuple"
    if _is_structseq(x):
        return "structseq"
    return None


def _entries(x, kind: str) -> list:
    """The path entries of a node's children, in flattening order."""
    if kind == "dict":
        return _sorted_keys(x)
    return [] if kind == "none" else list(range(len(x)))


def _children(x, kind: str) -> list:
    if kind == "dict":
        return [x[k] for k in _sorted_keys(x)]
    return [] if kind == "none" else list(x)


def _rebuild(x, kind: str, children: list):
    """A node of `x`'s type holding `children` (given in flattening order)."""
    if kind == "dict":
        by_key = dict(zip(_sorted_keys(x), children))
        items = [(k, by_key[k]) for k in x]
        if type(x) is collections.defaultdict:
            return collections.defaultdict(x.default_factory, items)
        return type(x)(items)
    if kind == "none":
        return None
    if kind == "namedtuple":
        return type(x)(*children)
    if kind == "deque":
        return collections.deque(children, maxlen=x.maxlen)
    return type(x)(children)   # list, tuple, struct sequence


def _type_error(kind: str, other) -> ValueError:
    expected = {"namedtuple": "collections.namedtuple", "deque": "collections.deque",
                "structseq": "PyStructSequence type",
                "dict": "dict, collections.OrderedDict, or collections.defaultdict"}.get(kind, kind)
    if kind == "none":
        return ValueError(f"Expected None, got {other!r}.")
    return ValueError(f"Expected an instance of {expected}, got {other!r}.")


def _match(node, kind: str, other) -> list:
    """`other`'s children in the order of `node`'s, after optree's checks that it has the same
    type and arity (or keys)."""
    if _kind(other, kind != "none") != kind:
        raise _type_error(kind, other)
    if kind == "none":
        return []
    if kind == "dict":
        return _match_keys(node, other)
    label = {"structseq": "PyStructSequence", "namedtuple": "namedtuple"}.get(kind, kind)
    if len(other) != len(node):
        shown = "tuple" if kind in ("namedtuple", "structseq") else kind
        raise ValueError(f"{label} arity mismatch; expected: {len(node)}, got: {len(other)}; "
                         f"{shown}: {other!r}.")
    if kind in ("namedtuple", "structseq") and type(other) is not type(node):
        raise ValueError(f"{label} type mismatch; expected type: {type(node)}, got type: "
                         f"{type(other)}; tuple: {other!r}.")
    return list(other)


def _match_keys(node, other) -> list:
    expected, got = _sorted_keys(dict(node)), _sorted_keys(dict(other))
    if set(expected) != set(got):
        message = f"dictionary key mismatch; expected key(s): {expected}, got key(s): {got}"
        missing = [k for k in expected if k not in other]
        extra = [k for k in got if k not in node]
        if missing:
            message += f", missing key(s): {missing}"
        if extra:
            message += f", extra key(s): {extra}"
        label = "OrderedDict" if type(other) is collections.OrderedDict else "dict"
        raise ValueError(f"{message}; {label}: {other!r}.")
    return [other[k] for k in _entries(node, "dict")]


def _map(func: Callable, structure, rests: tuple = (), none_is_leaf: bool = True,
         is_leaf: Callable | None = None):
    """optree's tree_map: `structure` decides the layout; each of `rests` must hold it, with
    anything (deeper structures too) at its leaves. All checks run before `func` is called."""
    def collect(node, others: list, leaves: list):
        kind = None if is_leaf is not None and is_leaf(node) else _kind(node, none_is_leaf)
        if kind is None:
            leaves.append((node, *others))
            return
        matched = [_match(node, kind, other) for other in others]
        for i, child in enumerate(_children(node, kind)):
            collect(child, [m[i] for m in matched], leaves)

    def build(node, results):
        kind = None if is_leaf is not None and is_leaf(node) else _kind(node, none_is_leaf)
        if kind is None:
            return next(results)
        return _rebuild(node, kind, [build(c, results) for c in _children(node, kind)])

    leaves: list = []
    collect(structure, list(rests), leaves)
    return build(structure, iter([func(*args) for args in leaves]))


def is_nested(structure) -> bool:
    """Whether `structure` is a list, tuple, dict, namedtuple, deque or struct sequence.

    >>> is_nested(42), is_nested({"foo": 42}), is_nested(None)
    (False, True, False)
    """
    return _kind(structure) is not None


def _flatten_with_path(structure, path: tuple, out: list) -> list:
    kind = _kind(structure)
    if kind is None:
        out.append((path, structure))
    else:
        for entry, child in zip(_entries(structure, kind), _children(structure, kind)):
            _flatten_with_path(child, path + (entry,), out)
    return out


def flatten(structure) -> list:
    """The leaves of `structure`, dict values by sorted key (an `OrderedDict` in its order).

    >>> flatten([[1, 2, 3], [4, [5], [[6]]]]), flatten(None), flatten({100: "world!", 6: "Hello"})
    ([1, 2, 3, 4, 5, 6], [None], ['Hello', 'world!'])
    """
    return [leaf for _, leaf in _flatten_with_path(structure, (), [])]


def flatten_with_path(structure) -> list:
    """`(path, leaf)` pairs: a path is the tuple of indices and keys that leads to its leaf.

    >>> flatten_with_path([{"foo": 42}])
    [((0, 'foo'), 42)]
    """
    return _flatten_with_path(structure, (), [])


def map_structure(func: Callable, *structures, none_is_leaf: bool = True):
    """`func` applied to the leaves of `structures` (which must all have the same layout) in a
    structure of that layout. With `none_is_leaf=False`, None is kept and `func` never sees it.

    >>> map_structure(lambda x, y: x * y, [[1], [2], [3]], [[1], [2], [3]])
    [[1], [4], [9]]
    """
    if len(structures) == 1 and not is_nested(structures[0]):
        if structures[0] is None and not none_is_leaf:
            return None
        return func(structures[0])
    if not structures:
        raise ValueError("Must provide at least one structure")

    def checked(*args):
        # optree maps up to the first structure; Keras refuses others that are deeper.
        if any(_kind(a, none_is_leaf) is not None for a in args):
            raise ValueError(_SAME)
        return func(*args)

    return _map(checked if len(structures) > 1 else func, structures[0], structures[1:],
                none_is_leaf)


def map_structure_up_to(shallow_structure, func: Callable, *structures):
    """`func` applied to the parts of `structures` found at the leaves of `shallow_structure`
    (deeper parts are passed whole). As in Keras 3.15, a None in `shallow_structure` is refused.

    >>> map_structure_up_to([1, [2, 3]], str, [[1, 1], [2, 2]])
    ['[1, 1]', ['2', '2']]
    """
    if not structures:
        raise ValueError("Must provide at least one structure")

    def without_shallow(shallow, *args):
        # Keras tests the shallow leaf with optree's default none_is_leaf=False.
        if shallow is None:
            raise ValueError(_SAME)
        return func(*args)

    return _map(without_shallow, shallow_structure, structures)


def assert_same_structure(a, b, check_types=None) -> None:
    """Raise a ValueError unless `a` and `b` are nested alike: the same container types (a
    dict, OrderedDict and defaultdict match on their keys; a list and a tuple do not) and sizes.

    >>> assert_same_structure([(0, 1)], [(2, 3)])
    """
    if check_types is not None:
        warnings.warn("The `check_types` argument is deprecated and no longer has any effect, "
                      "please remove." if check_types else
                      "The `check_types` argument is deprecated and no longer has any effect. "
                      "For a looser check, use `keras.tree.assert_same_paths()`, which considers "
                      "`list`, `tuple`, `namedtuple` and `deque` as matching",
                      DeprecationWarning, stacklevel=2)

    def check(a_leaf, b_leaf):
        if is_nested(a_leaf) or is_nested(b_leaf):
            raise ValueError(_SAME)

    _map(check, a, (b,))


def assert_same_paths(a, b) -> None:
    """Raise a ValueError unless `a` and `b` have the same paths (container types ignored).

    >>> assert_same_paths([0, 1], (2, 3))
    """
    a_paths = {path for path, _ in flatten_with_path(a)}
    b_paths = {path for path, _ in flatten_with_path(b)}
    if a_paths != b_paths:
        message = "`a` and `b` don't have the same paths."
        if a_paths - b_paths:
            message += f"\nPaths in `a` missing in `b`:\n{a_paths - b_paths}"
        if b_paths - a_paths:
            message += f"\nPaths in `b` missing in `a`:\n{b_paths - a_paths}"
        raise ValueError(message)


def pack_sequence_as(structure, flat_sequence):
    """`flat_sequence` put back into the layout of `structure` (the inverse of `flatten`).

    >>> pack_sequence_as((("a", "b"), ("c", "d", "e"), "f"), [1, 2, 3, 4, 5, 6])
    ((1, 2), (3, 4, 5), 6)
    """
    leaves = list(flat_sequence)
    expected = len(flatten(structure))
    if len(leaves) < expected:
        raise ValueError(f"Too few leaves for PyTreeSpec; expected: {expected}, got: {len(leaves)}.")
    if len(leaves) > expected:
        raise ValueError(f"Too many leaves for PyTreeSpec; expected: {expected}.")
    values = iter(leaves)
    return _map(lambda _: next(values), structure)


def traverse(func: Callable, structure, top_down: bool = True):
    """Apply `func` to every sub-structure, parents first (`top_down`) or children first. A
    result other than None replaces the sub-structure (and, top-down, is not descended into);
    `MAP_TO_NONE` replaces it with None.

    >>> traverse(lambda x: "pair" if x == (1, 2) else None, [(1, 2), [3]])
    ['pair', [3]]
    """
    def children_traversed():
        kind = _kind(structure)
        if kind is None:
            return structure
        return _rebuild(structure, kind, [traverse(func, c, top_down)
                                          for c in _children(structure, kind)])

    if top_down:
        result = func(structure)
        if result is None:
            return children_traversed()
    else:
        traversed = children_traversed()
        result = func(traversed)
        if result is None:
            return traversed
    return None if result is MAP_TO_NONE else result


def lists_to_tuples(structure):
    """`structure` with every list turned into a tuple.

    >>> lists_to_tuples([1, [2, {"a": [3]}]])
    (1, (2, {'a': (3,)}))
    """
    return traverse(lambda x: tuple(x) if isinstance(x, list) else None, structure, top_down=False)


def _is_shape(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(e, (int, type(None))) for e in x)


def map_shape_structure(func: Callable, structure):
    """`map_structure` that takes shapes (lists or tuples of ints and Nones) as leaves.

    >>> map_shape_structure(lambda s: s[1:], {"a": (None, 3), "b": [(None, 4, 2)]})
    {'a': (3,), 'b': [(4, 2)]}
    """
    return _map(func, structure, is_leaf=_is_shape)
