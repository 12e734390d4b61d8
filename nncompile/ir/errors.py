"""Errors raised by the IR. All are ValueErrors so callers that expect Keras-style
ValueErrors for bad models catch them too."""


class IRError(ValueError):
    """Base class of every error the IR raises."""


class ShapeError(IRError):
    """An op received inputs or attributes its shape/dtype rule rejects."""


class VerifyError(IRError):
    """A graph broke an invariant (types, SSA dominance, attributes)."""


class ParseError(IRError):
    """Malformed IR text; the message names line and column."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column
