"""The IR text form, reading side: a hand-written tokenizer and a recursive-descent parser.

    function := 'func' '@'name '(' [arg {',' arg}] ')' '->' '(' [result {',' result}] ')'
                '{' {op} 'return' [use {',' use}] '}'
    arg      := '%'name ':' type ['{' 'param' '}']
    result   := word ':' type
    op       := '%'name [':' int] '=' word '(' [use {',' use}] ')' [attrs] ':' types
                ['loc' '(' string ')'] ['{' region {region} '}']
    region   := '^'name '(' [arg {',' arg}] ')' ':' {op} 'return' [use {',' use}]
    use      := '%'name ['#' int]
    type     := dtype '[' [dim {',' dim}] ']'      dim := int | '?' | word | string (an expression)
    attrs    := '{' word '=' value {',' word '=' value} '}'
    value    := int | float | string | 'true' | 'false' | 'none' | dtype | list
                | 'dense' '<' type ':' tensor-body '>'

Names are bare (`[A-Za-z0-9_.$/-]+`) or double-quoted; `//` starts a comment. Attribute values
are read generically, then coerced by the op table's spec (`normalize_attrs`). Regions fill the
op's graph-valued attributes in name order; each is its own scope (it sees only its arguments)
and becomes a Graph named by its label, its outputs named `output_0`, `output_1`, ...
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError, ParseError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import OPS, OpDef, infer_types, normalize_attrs
from nncompile.ir.printer import region_names
from nncompile.ir.types import TensorType, check_dim

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.$/-")
_WORD_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_DIGITS = frozenset("0123456789")
_PUNCT = frozenset("()[]{}<>,:=?^")
_DTYPES = frozenset(d.value for d in DType)
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}

WORD, VALUE, FUNC, INT, FLOAT, STRING, PUNCT, EOF = (
    "word", "value", "func", "int", "float", "string", "punct", "end of input")


@dataclass
class Token:
    kind: str
    text: str           # the source text, for messages
    value: Any          # decoded: name, number, string
    line: int
    column: int
    quoted: bool = False
    index: int | None = None  # the `#i` of a multi-result use

    def shown(self) -> str:
        return "end of input" if self.kind == EOF else repr(self.text)


class _Lexer:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1
        self.line_start = 0

    def error(self, message: str, pos: int | None = None) -> ParseError:
        pos = self.pos if pos is None else pos
        return ParseError(message, self.line, pos - self.line_start + 1)

    def tokens(self) -> list[Token]:
        out = []
        while True:
            self._skip_space()
            if self.pos >= len(self.text):
                out.append(Token(EOF, "", None, self.line, self.pos - self.line_start + 1))
                return out
            out.append(self._token())

    def _skip_space(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\n":
                self.pos += 1
                self.line, self.line_start = self.line + 1, self.pos
            elif ch in " \t\r":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _token(self) -> Token:
        start, text = self.pos, self.text
        ch = text[start]
        if ch in "%@":
            return self._name(VALUE if ch == "%" else FUNC)
        if ch == '"':
            value = self._string()
            return self._make(STRING, start, value)
        if ch in _DIGITS or (ch == "-" and text[start + 1:start + 2] != ">"):
            return self._number()
        if text.startswith("->", start) or text.startswith("...", start):
            self.pos += 2 if ch == "-" else 3
            return self._make(PUNCT, start, text[start:self.pos])
        if ch in _WORD_START:
            self._run(_NAME_CHARS)
            return self._make(WORD, start, text[start:self.pos])
        if ch in _PUNCT:
            self.pos += 1
            return self._make(PUNCT, start, ch)
        raise self.error(f"unexpected character {ch!r}")

    def _make(self, kind: str, start: int, value, **extra) -> Token:
        return Token(kind, self.text[start:self.pos], value, self.line, start - self.line_start + 1, **extra)

    def _run(self, chars: frozenset) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def _name(self, kind: str) -> Token:
        start = self.pos
        self.pos += 1
        quoted = self.text[self.pos:self.pos + 1] == '"'
        if quoted:
            name = self._string()
        else:
            self._run(_NAME_CHARS)
            name = self.text[start + 1:self.pos]
            if not name:
                raise self.error(f"expected a name after {self.text[start]!r}")
        index = None
        if kind == VALUE and self.text[self.pos:self.pos + 1] == "#":
            self.pos += 1
            digits_start = self.pos
            self._run(_DIGITS)
            if self.pos == digits_start:
                raise self.error("expected a result number after '#'")
            index = int(self.text[digits_start:self.pos])
        return self._make(kind, start, name, quoted=quoted, index=index)

    def _string(self) -> str:
        start, text = self.pos, self.text
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise self.error("unterminated string", start)
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                out.append(self._escape())
            else:
                out.append(ch)
                self.pos += 1

    def _escape(self) -> str:
        start, text = self.pos, self.text
        code = text[start + 1:start + 2]
        if code in _UNESCAPE:
            self.pos += 2
            return _UNESCAPE[code]
        if code == "u" and text[start + 2:start + 3] == "{":
            end = text.find("}", start + 3)
            digits = text[start + 3:end] if end > 0 else ""
            if digits and len(digits) <= 6 and all(c in "0123456789abcdefABCDEF" for c in digits):
                if int(digits, 16) <= 0x10FFFF:
                    self.pos = end + 1
                    return chr(int(digits, 16))
        raise self.error("bad escape in string; expected \\\\, \\\", \\n, \\t, \\r or \\u{hex}", start)

    def _number(self) -> Token:
        start, text = self.pos, self.text
        if text[start] == "-":
            self.pos += 1
        for special in ("inf", "nan"):
            if text.startswith(special, self.pos):
                self.pos += 3
                return self._make(FLOAT, start, float(text[start:self.pos]))
        digits_start = self.pos
        self._run(_DIGITS)
        if self.pos == digits_start:
            raise self.error("expected a number after '-'", start)
        is_float = False
        if text[self.pos:self.pos + 1] == "." and not text.startswith("...", self.pos):
            is_float = True
            self.pos += 1
            self._run(_DIGITS)
        if text[self.pos:self.pos + 1] in ("e", "E"):
            is_float = True
            self.pos += 1
            if text[self.pos:self.pos + 1] in ("+", "-"):
                self.pos += 1
            exp_start = self.pos
            self._run(_DIGITS)
            if self.pos == exp_start:
                raise self.error("expected digits in the exponent", start)
        literal = text[start:self.pos]
        return self._make(FLOAT if is_float else INT, start, float(literal) if is_float else int(literal))


def _value_key(tok: Token) -> tuple[str, str]:
    """Bare all-digit names are node numbers, kept apart from input names (printed quoted)."""
    return ("#" if not tok.quoted and tok.value.isdigit() else "%", tok.value)


class _Parser:
    def __init__(self, text: str):
        self.tokens = _Lexer(text).tokens()
        self.i = 0
        self.defs: dict[tuple[str, str], list[Value]] = {}

    # token helpers --------------------------------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != EOF:
            self.i += 1
        return tok

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok.kind in (PUNCT, WORD) and tok.text == text

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise self.error(f"expected {text!r} but found {self.peek().shown()}")
        return self.next()

    def expect_kind(self, kind: str, what: str) -> Token:
        if self.peek().kind != kind:
            raise self.error(f"expected {what} but found {self.peek().shown()}")
        return self.next()

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        tok = tok or self.peek()
        return ParseError(message, tok.line, tok.column)

    def separated(self, close: str, item) -> list:
        """`item (',' item)*` up to and including `close` (which may come at once)."""
        out = []
        if not self.accept(close):
            out.append(item())
            while self.accept(","):
                out.append(item())
            self.expect(close)
        return out

    # the function ---------------------------------------------------------------------------
    def parse(self) -> Graph:
        self.expect("func")
        graph = Graph(self.expect_kind(FUNC, "a function name '@name'").value)
        self.expect("(")
        for tok, type, is_param in self.separated(")", self.argument):
            if any(v.name == tok.value for v in graph.inputs):
                raise self.error(f"redefinition of value {tok.text}", tok)
            self.define(tok, [graph.add_input(tok.value, type, param=is_param)])
        self.expect("->")
        self.expect("(")
        results = self.separated(")", self.result)
        self.expect("{")
        self.ops(graph, f"function @{graph.name}")
        self.ret(graph, results)
        if self.peek().kind != EOF:
            raise self.error(f"unexpected {self.peek().shown()} after the end of the function")
        return graph

    def ops(self, graph: Graph, what: str) -> None:
        """Append ops to `graph` up to its 'return'."""
        while not self.at("return"):
            if self.at("}") or self.peek().kind == EOF:
                raise self.error(f"missing 'return' at the end of {what}")
            if self.peek().kind != VALUE:
                raise self.error(f"expected an op ('%N = op(...)') or 'return' but found {self.peek().shown()}")
            graph.append(self.op())

    def argument(self) -> tuple[Token, TensorType, bool]:
        tok = self.expect_kind(VALUE, "an argument '%name'")
        if tok.index is not None:
            raise self.error("an argument name takes no '#' result number", tok)
        self.expect(":")
        type = self.type()
        is_param = self.accept("{")
        if is_param:
            self.expect("param")
            self.expect("}")
        return tok, type, is_param

    def result(self) -> tuple[Token, TensorType, Token | None]:
        """`name: type`, optionally `{updates %param}` (the parameter this result overwrites)."""
        tok = self.peek()
        if tok.kind not in (WORD, STRING):
            raise self.error(f"expected a result name but found {tok.shown()}")
        self.next()
        self.expect(":")
        type = self.type()
        updated = None
        if self.accept("{"):
            self.expect("updates")
            updated = self.expect_kind(VALUE, "the updated parameter '%name'")
            self.expect("}")
        return tok, type, updated

    def update(self, graph: Graph, result: Token, param: Token) -> None:
        """Record that `result` overwrites `param`: a parameter of the function, updated once."""
        params = [v.name for v in graph.param_inputs]
        if param.value not in params:
            raise self.error(f"result {result.value!r} updates {param.text}, which is not a "
                             f"parameter of @{graph.name} (parameters: "
                             f"{', '.join(params) or 'none'})", param)
        earlier = [name for name, p in graph.updates.items() if p == param.value]
        if earlier:
            raise self.error(f"result {result.value!r} updates {param.text}, which result "
                             f"{earlier[0]!r} already updates; a parameter takes one new value", param)
        graph.updates[result.value] = param.value

    def ret(self, graph: Graph, results: list[tuple[Token, TensorType, Token | None]]) -> None:
        ret_tok = self.expect("return")
        uses = [] if self.at("}") else [self.use_token()]
        while self.accept(","):
            uses.append(self.use_token())
        self.expect("}")
        if len(uses) != len(results):
            raise self.error(f"'return' gives {len(uses)} values but the signature declares "
                             f"{len(results)} results", ret_tok)
        names: set[str] = set()
        for (name_tok, declared, updated), use in zip(results, uses):
            if name_tok.value in names:
                raise self.error(f"duplicate result name {name_tok.value!r}", name_tok)
            names.add(name_tok.value)
            value = self.lookup(use)
            if value.type != declared:
                raise self.error(f"returned value {use.text} has type {value.type} but the "
                                 f"signature declares {declared}", use)
            graph.outputs.append(value)
            graph.output_names.append(name_tok.value)
            if updated is not None:
                self.update(graph, name_tok, updated)

    # values ---------------------------------------------------------------------------------
    def define(self, tok: Token, values: list[Value]) -> list[Value]:
        key = _value_key(tok)
        if key in self.defs:
            raise self.error(f"redefinition of value {tok.text}", tok)
        self.defs[key] = values
        return values

    def use_token(self) -> Token:
        return self.expect_kind(VALUE, "a value '%name'")

    def lookup(self, tok: Token) -> Value:
        values = self.defs.get(_value_key(tok))
        if values is None:
            raise self.error(f"use of undefined value {tok.text}", tok)
        if tok.index is None:
            if len(values) != 1:
                raise self.error(f"{tok.text} has {len(values)} results; use {tok.text}#0 to "
                                 f"{tok.text}#{len(values) - 1}", tok)
            return values[0]
        if tok.index >= len(values):
            raise self.error(f"{tok.text} has {len(values)} results; #{tok.index} is out of range", tok)
        return values[tok.index]

    # ops ------------------------------------------------------------------------------------
    def op(self) -> Node:
        res_tok = self.next()
        if res_tok.index is not None:
            raise self.error("a result name takes no '#' result number", res_tok)
        count = self.expect_kind(INT, "a result count").value if self.accept(":") else 1
        self.expect("=")
        op_tok = self.peek()
        if op_tok.kind not in (WORD, STRING):
            raise self.error(f"expected an op name but found {op_tok.shown()}")
        self.next()
        opdef = OPS.get(op_tok.value)
        if opdef is None:
            raise self.error(f"unknown op {op_tok.value!r}; valid ops: {', '.join(sorted(OPS))}", op_tok)
        self.expect("(")
        inputs = [self.lookup(tok) for tok in self.separated(")", self.use_token)]
        where = f"op '{opdef.name}' of {res_tok.text}"
        attrs = self.attributes(opdef, where, op_tok) if self.at("{") else {}
        colon = self.expect(":")
        types = self.result_types()
        loc = ""
        if self.accept("loc"):
            self.expect("(")
            loc = self.expect_kind(STRING, "a location string").value
            self.expect(")")
        attrs.update(self.regions(opdef, where))
        attrs = self.normalized(opdef, attrs, where, op_tok)
        if len(types) != count:
            raise self.error(f"{res_tok.text} declares {count} results but {len(types)} types", colon)
        self.check_types(opdef, inputs, attrs, types, where, op_tok)
        node = Node(opdef.name, inputs, attrs, [t for _, t in types], loc)
        self.define(res_tok, node.outputs)
        return node

    def regions(self, opdef: OpDef, where: str) -> dict[str, Graph]:
        """`{ ^a(...): ... ^b(...): ... }` after a node: one region per graph-valued attribute."""
        names = region_names(opdef.name)
        if not names:
            return {}
        if not self.at("{"):
            raise self.error(f"{where}: expected its region{'s' if len(names) > 1 else ''} "
                             f"({', '.join(names)}) after the result types, in '{{ ... }}'")
        self.expect("{")
        graphs = {name: self.region() for name in names}
        self.expect("}")
        return graphs

    def region(self) -> Graph:
        """`^label(%arg: type, ...): ops return uses`, parsed in a scope of its own."""
        self.expect("^")
        label = self.peek()
        if label.kind not in (WORD, STRING):
            raise self.error(f"expected a region label after '^' but found {label.shown()}")
        self.next()
        graph = Graph(label.value)
        outer, self.defs = self.defs, {}
        self.expect("(")
        for tok, type, is_param in self.separated(")", self.argument):
            if is_param:
                raise self.error("a region's arguments are plain inputs; '{param}' is not allowed", tok)
            if any(v.name == tok.value for v in graph.inputs):
                raise self.error(f"redefinition of value {tok.text}", tok)
            self.define(tok, [graph.add_input(tok.value, type)])
        self.expect(":")
        self.ops(graph, f"region ^{graph.name}")
        self.expect("return")
        uses = [] if self.at("}") or self.at("^") else [self.use_token()]
        while self.accept(","):
            uses.append(self.use_token())
        graph.set_outputs([self.lookup(tok) for tok in uses])
        self.defs = outer
        return graph

    def result_types(self) -> list[tuple[Token, TensorType]]:
        def one():
            return self.peek(), self.type()
        if self.accept("("):
            return self.separated(")", one)
        return [one()]

    def check_types(self, opdef: OpDef, inputs: list[Value], attrs: dict,
                    types: list[tuple[Token, TensorType]], where: str, op_tok: Token) -> None:
        try:
            inferred = infer_types(opdef, [v.type for v in inputs], attrs, where)
        except ValueError as e:
            raise self.error(str(e), op_tok) from None
        if len(inferred) != len(types):
            raise self.error(f"{where}: op {opdef.name!r} has {len(inferred)} results but "
                             f"{len(types)} are declared", types[0][0])
        for i, ((tok, declared), actual) in enumerate(zip(types, inferred)):
            if declared != actual:
                raise self.error(f"{where}: result {i} is declared {declared} but the shape rule "
                                 f"of {opdef.name!r} gives {actual}", tok)

    def attributes(self, opdef: OpDef, where: str, op_tok: Token) -> dict:
        self.expect("{")
        attrs: dict[str, Any] = {}
        seen: set[str] = set()
        regions = region_names(opdef.name)

        def one():
            name_tok = self.peek()
            if name_tok.kind not in (WORD, STRING):
                raise self.error(f"expected an attribute name but found {name_tok.shown()}")
            self.next()
            name = name_tok.value
            if name in seen:
                raise self.error(f"duplicate attribute {name!r}", name_tok)
            seen.add(name)
            if name not in opdef.attrs:
                valid = ", ".join(sorted(opdef.attrs)) or "none"
                raise self.error(f"{where}: unknown attribute {name!r} of op {opdef.name!r}; "
                                 f"valid attributes: {valid}", name_tok)
            if name in regions:
                raise self.error(f"{where}: attribute {name!r} is a region; write it after the "
                                 "result types as '{ ^name(...): ... return ... }'", name_tok)
            self.expect("=")
            value_tok = self.peek()
            value = self.attr_value()
            spec = opdef.attrs[name]
            if value is None and spec.default is not None:
                raise self.error(f"{where}: attribute {name!r} cannot be none", value_tok)
            if value is not None:
                single = dataclasses.replace(opdef, attrs={name: spec})
                attrs[name] = self.normalized(single, {name: value}, where, value_tok)[name]

        self.separated("}", one)
        return attrs

    def normalized(self, opdef: OpDef, attrs: dict, where: str, tok: Token) -> dict:
        try:
            return normalize_attrs(opdef, attrs, where)
        except IRError as e:
            raise self.error(str(e), tok) from None

    # attribute values -----------------------------------------------------------------------
    def attr_value(self, in_list: bool = False):
        tok = self.peek()
        if tok.kind in (INT, FLOAT, STRING):
            return self.next().value
        if not in_list and self.accept("["):  # no attribute kind nests lists
            return self.separated("]", lambda: self.attr_value(in_list=True))
        if tok.kind == PUNCT and tok.text == "?" and in_list:
            return self.next().text
        if tok.kind != WORD:
            raise self.error(f"expected an attribute value but found {tok.shown()}")
        word = self.next().value
        if word in ("true", "false"):
            return word == "true"
        if word in ("inf", "nan"):
            return float(word)
        if word == "none":
            return None
        if word == "dense":
            return self.tensor()
        if word in _DTYPES:
            return DType(word)
        if in_list:
            return word
        raise self.error(f"expected an attribute value but found {tok.shown()} "
                         "(strings are double-quoted)", tok)

    def tensor(self) -> np.ndarray:
        self.expect("<")
        type_tok = self.peek()
        type = self.type()
        if not type.is_static:
            raise self.error(f"a constant needs a static shape, got {type}", type_tok)
        self.expect(":")
        body_tok = self.peek()
        if self.at("..."):
            raise self.error("the constant is elided ('...'); print the graph without "
                             "elide_constants to parse it back")
        flat: list = []
        self.tensor_body(type, 0, flat)
        self.expect(">")
        return self.make_array(type, flat, body_tok)

    def tensor_body(self, type: TensorType, axis: int, flat: list) -> None:
        if axis == type.rank:
            flat.append(self.element(type.dtype))
            return
        self.expect("[")
        size = type.shape[axis]
        for i in range(size):
            if self.at("]"):
                raise self.error(f"dimension {axis} of the {type} constant has {size} elements, "
                                 f"only {i} are given")
            if i:
                self.expect(",")
            self.tensor_body(type, axis + 1, flat)
        if self.at(","):
            raise self.error(f"dimension {axis} of the {type} constant has {size} elements, "
                             "more are given")
        self.expect("]")

    def element(self, dtype: DType):
        tok = self.next()
        if dtype is DType.bool:
            if tok.kind == WORD and tok.text in ("true", "false"):
                return tok.text == "true"
            raise self.error(f"expected true or false in a bool constant but found {tok.shown()}", tok)
        if dtype.is_int:
            info = np.iinfo(dtype.numpy)
            if tok.kind != INT:
                raise self.error(f"expected an integer in a {dtype} constant but found {tok.shown()}", tok)
            if not info.min <= tok.value <= info.max:
                raise self.error(f"{tok.value} is out of range for {dtype} "
                                 f"[{info.min}, {info.max}]", tok)
            return tok.value
        if tok.kind in (INT, FLOAT):
            return float(tok.value)
        if tok.kind == WORD and tok.text in ("inf", "nan"):
            return float(tok.text)
        raise self.error(f"expected a number in a {dtype} constant but found {tok.shown()}", tok)

    def make_array(self, type: TensorType, flat: list, tok: Token) -> np.ndarray:
        shape = tuple(type.shape)
        if not type.dtype.is_float:
            return np.array(flat, dtype=type.dtype.numpy).reshape(shape)
        wide = np.array(flat, dtype=np.float64)
        with np.errstate(over="ignore"):
            array = wide.astype(type.dtype.numpy)
        if np.any(np.isfinite(wide) & ~np.isfinite(array)):
            raise self.error(f"a value of the constant is out of range for {type.dtype}", tok)
        return array.reshape(shape)

    # types ----------------------------------------------------------------------------------
    def type(self) -> TensorType:
        tok = self.peek()
        if tok.kind != WORD:
            raise self.error(f"expected a type like 'f32[?,10]' but found {tok.shown()}")
        self.next()
        try:
            dtype = DType.parse(tok.value)
        except ValueError as e:
            raise self.error(str(e), tok) from None
        self.expect("[")
        dims = tuple(self.separated("]", self.dim))
        try:
            return TensorType(dtype, dims)
        except IRError as e:
            raise self.error(str(e), tok) from None

    def dim(self):
        tok = self.next()
        if tok.kind == PUNCT and tok.text == "?":
            return "?"
        if tok.kind not in (INT, WORD, STRING):
            raise self.error(f"expected a dimension (an int, '?', a symbol or a quoted expression) "
                             f"but found {tok.shown()}", tok)
        try:
            return check_dim(tok.value)
        except IRError as e:
            raise self.error(str(e), tok) from None


def parse(text: str) -> Graph:
    """Read the text form of a graph (as printed by `print_graph`); errors are ParseErrors
    naming line and column. The graph carries no parameter values (`graph.params` is empty)."""
    return _Parser(text).parse()
