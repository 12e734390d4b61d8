"""A module cut into parts that LLVM optimizes and compiles at once, one per worker process,
and their object files kept together as one blob (the disk cache's entry, `target.JitModule`).

LLVM works on one module in one thread: a training step's module (W1's: 45 functions, 150 KB
of text) spent 0.25 s in one core's optimizer and code generator while the other core waited.
The functions of a module fall into groups that reference one another only through the entry
points: a kernel with its tasks, loop parts and constants. The entry points (functions named
`nncompile_*`) stay in the first part; the groups are dealt out to the parts, largest first,
each to the part with the least text so far. A definition that another part references is given
external linkage there, and the other part declares it; the object files of one module are
loaded into one execution engine, which resolves such references between them. Each part
carries the whole metadata list (loop hints are numbered module-wide; LLVM drops unused nodes).
"""
from __future__ import annotations

import re
import struct

from llvmlite import ir

ENTRY_PREFIX = "nncompile_"
MIN_PART_CHARS = 40_000          # below this much text per part, a second worker costs more than it saves
MAX_PARTS = 4
PACK_MAGIC = b"nncompile-objects\n"

_NAME = re.compile(r'@"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})")
_LINKAGE = re.compile(r'^(define |@"(?:[^"\\]|\\.)*" = )(?:internal|private) ')


def split(module: ir.Module, workers: int) -> list[str]:
    """The module's text cut into at most `workers` parts, and at most one per MIN_PART_CHARS of
    text (one when it is too small to pay)."""
    texts = {name: str(value) for name, value in module.globals.items()}
    count = min(workers, MAX_PARTS, sum(map(len, texts.values())) // MIN_PART_CHARS)
    defined = [name for name, value in module.globals.items() if not _declaration(value)]
    if count < 2 or len(defined) < 2:
        return [str(module)]
    refs = {name: {r for r in map(_unescape, _NAME.findall(texts[name])) if r in module.globals and r != name}
            for name in defined}
    owner = _deal(_groups(defined, refs), texts, count)
    exported = {r for name in defined for r in refs[name] if r in owner and owner[r] != owner[name]}
    return [_part_text(module, texts, refs, owner, exported, part) for part in range(count)]


def _unescape(name: str) -> str:
    """A name as LLVM text spells it inside quotes (\\XX for a quote, a backslash, ...) as it is."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def _declaration(value: ir.GlobalValue) -> bool:
    if isinstance(value, ir.Function):
        return value.is_declaration
    return value.initializer is None


def _groups(defined: list[str], refs: dict[str, set[str]]) -> list[list[str]]:
    """The definitions in groups joined by references (union-find), entry points apart: every
    entry point is in the first group."""
    parent = {name: name for name in defined}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    entries = [name for name in defined if name.startswith(ENTRY_PREFIX)]
    for name in entries[1:]:
        parent[root(name)] = root(entries[0])
    for name in defined:
        if name.startswith(ENTRY_PREFIX):
            continue
        for r in refs[name]:
            if r in parent and not r.startswith(ENTRY_PREFIX):
                parent[root(r)] = root(name)
    groups: dict[str, list[str]] = {}
    for name in defined:
        groups.setdefault(root(name), []).append(name)
    first = root(entries[0]) if entries else None
    return sorted(groups.values(), key=lambda g: root(g[0]) != first)


def _deal(groups: list[list[str]], texts: dict[str, str], count: int) -> dict[str, int]:
    """Each definition's part: the entry points' group to part 0, then each group, largest first,
    to the part with the least text."""
    sizes = [0] * count
    owner: dict[str, int] = {}
    first, rest = groups[0], groups[1:]
    for group in [first, *sorted(rest, key=lambda g: -sum(len(texts[n]) for n in g))]:
        part = 0 if group is first else sizes.index(min(sizes))
        sizes[part] += sum(len(texts[n]) for n in group)
        owner.update(dict.fromkeys(group, part))
    return owner


def _part_text(module: ir.Module, texts: dict[str, str], refs: dict[str, set[str]],
               owner: dict[str, int], exported: set[str], part: int) -> str:
    mine = [name for name, p in owner.items() if p == part]
    needed = {r for name in mine for r in refs[name]}
    lines = [f'; ModuleID = "{module.name}.part{part}"', f'target triple = "{module.triple}"',
             f'target datalayout = "{module.data_layout}"', ""]
    for name, value in module.globals.items():
        if owner.get(name) == part:
            text = texts[name]
            lines.append(_LINKAGE.sub(r"\1", text, count=1) if name in exported else text)
        elif name not in owner or name in needed:
            lines.append(texts[name] if name not in owner else _declare(value))
    lines += module._get_metadata_lines()
    return "\n".join(lines)


def _declare(value: ir.GlobalValue) -> str:
    """An external declaration of a definition that another part holds."""
    scratch = ir.Module()
    if isinstance(value, ir.Function):
        return str(ir.Function(scratch, value.ftype, value.name))
    declared = ir.GlobalVariable(scratch, value.value_type, value.name)
    declared.linkage = "external"
    return str(declared)


def pack(objects: list[bytes]) -> bytes:
    """Object files as one blob (one object file stays as it is)."""
    if len(objects) == 1:
        return objects[0]
    return PACK_MAGIC + struct.pack(f"<{len(objects) + 1}Q", len(objects), *map(len, objects)) + b"".join(objects)


def unpack(blob: bytes) -> list[bytes]:
    """The object files of a blob that `pack` made (or the one object file it is)."""
    if not blob.startswith(PACK_MAGIC):
        return [blob]
    at = len(PACK_MAGIC)
    (count,) = struct.unpack_from("<Q", blob, at)
    sizes = struct.unpack_from(f"<{count}Q", blob, at + 8)
    objects, at = [], at + 8 * (count + 1)
    for size in sizes:
        objects.append(blob[at:at + size])
        at += size
    return objects
