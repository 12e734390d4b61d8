"""What initializers, regularizers and constraints share: configuration by keyword arguments,
and a catalog that resolves Keras identifiers (names, config dicts, instances) to objects."""
from __future__ import annotations

from typing import Any, Callable, Mapping


class KerasObject:
    """Configured by its constructor's keyword arguments: `get_config` / `from_config` round-trip."""

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]):
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Catalog:
    """The objects of one kind ("initializer", ...) by name, resolved the way Keras 3 does."""

    def __init__(self, kind: str, base: type, module: str, by_name: Mapping[str, type], callable_form: str):
        self.kind = kind
        self.base = base
        self.module = module
        self.by_name = dict(by_name)
        self.callable_form = callable_form

    def lookup(self, name: str) -> type:
        """The built-in class a name stands for (a name, as in Keras, never means a custom one)."""
        if not isinstance(name, str) or name not in self.by_name:
            raise ValueError(f"Could not interpret {self.kind} identifier: {name!r}; valid names: "
                             f"{', '.join(sorted(self.by_name))}")
        return self.by_name[name]

    def get(self, identifier) -> Callable | None:
        """The object for a name, a config dict `{"class_name", "config"}`, an instance, a class or
        a plain callable (returned as is); None gives None. As in Keras, a name is one of the
        built-in ones, and a config dict may name custom objects (`get_custom_objects`, a
        `custom_object_scope`): a class by its registered or class name, a function by name."""
        if identifier is None or isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, type) and issubclass(identifier, self.base):
            return identifier()
        if isinstance(identifier, str):
            return self.lookup(identifier)()
        if isinstance(identifier, Mapping):
            return self._from_config(identifier)
        if callable(identifier):
            return identifier
        raise ValueError(f"Could not interpret {self.kind} identifier: {identifier!r}; expected a "
                         f"name, a config dict, a {self.base.__name__} or a callable {self.callable_form}")

    def _from_config(self, identifier: Mapping):
        if "class_name" not in identifier:
            raise ValueError(f"Could not interpret {self.kind} identifier: {identifier!r}; a "
                             f"config dict needs the keys 'class_name' and 'config'")
        config = identifier.get("config") or {}
        if identifier["class_name"] == "function":     # a function, by its (registered) name
            custom = custom_object(config)
            return custom if callable(custom) and not isinstance(custom, type) else self.get(config)
        if not isinstance(config, Mapping):
            raise ValueError(f"Could not interpret {self.kind} identifier: {identifier!r}; its "
                             f"'config' must be a dict of arguments")
        for name in (identifier.get("registered_name"), identifier["class_name"]):
            custom = custom_object(name)
            if isinstance(custom, type) and issubclass(custom, self.base):
                return custom.from_config(config)
        return self.lookup(identifier["class_name"]).from_config(config)

    def serialize(self, obj):
        """Keras 3's config dict of one of these objects (a class users wrote under its module
        and registered name, as Keras writes it); None and plain callables as they are."""
        if not isinstance(obj, self.base):
            return obj
        cls = type(obj)
        if cls in self.by_name.values():
            return {"module": self.module, "class_name": cls.__name__, "config": obj.get_config(),
                    "registered_name": None}
        return {"module": module_of(cls), "class_name": cls.__name__, "config": obj.get_config(),
                "registered_name": _registered_name(cls)}


def custom_object(name) -> Any:
    """The custom object (`keras.saving.get_custom_objects`, a `custom_object_scope`) a name
    stands for, or None."""
    from nncompile.keras.saving.registry import get_registered_object   # saving imports this module
    return get_registered_object(name) if isinstance(name, str) else None


def _registered_name(obj) -> str:
    from nncompile.keras.saving.registry import get_registered_name   # saving imports this module
    return get_registered_name(obj)


def module_of(cls: type) -> str | None:
    """The module a config names a user's class by: None for a script's own (`__main__`), as Keras
    writes it."""
    return None if cls.__module__ == "__main__" else cls.__module__
