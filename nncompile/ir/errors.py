"""Errors raised by the IR. All are ValueErrors so callers that expect Keras-style
ValueErrors for bad models catch them too."""


class IRError(ValueError):
    """Base class of every error the IR raises."""


class ShapeError(IRError):
    """An op received inputs or attributes its shape/dtype rule rejects."""


class SizeError(ShapeError, MemoryError):
    """A size no machine can hold: a type whose byte size an int64 cannot count (refused when the
    type is made), or a run whose values, at the sizes its inputs bind, need more bytes than this
    machine's memory (refused before anything is allocated). Also a MemoryError, so code that
    expects allocation failures catches it too."""


class VerifyError(IRError):
    """A graph broke an invariant (types, SSA dominance, attributes)."""


class ParseError(IRError):
    """Malformed IR text; the message names line and column."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column
