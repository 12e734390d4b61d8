"""Name the compiled code for `perf`: with NNCOMPILE_PERF_MAP=1, every function of every module
loaded in this process (each kernel, GEMM piece and task, internal ones included) is appended
to /tmp/perf-<pid>.map, the file `perf report` reads to name JIT-compiled code:

    NNCOMPILE_PERF_MAP=1 perf record -o perf.data python train.py
    perf report -i perf.data --sort symbol

Kernels are then kept out of line (LLVM would inline a kernel called once into the entry), so
each has its own name. The object file's symbol table gives each function's offset in its section and its size; a
global function of the same section, whose run-time address the JIT reports, places the section.
"""
from __future__ import annotations

import os
import struct
from typing import Callable, Iterator

ENV = "NNCOMPILE_PERF_MAP"
_SHT_SYMTAB = 2
_STT_FUNC = 2
_STB_GLOBAL = 1


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def _functions(elf: bytes) -> Iterator[tuple[str, int, int, int, bool]]:
    """(name, section index, offset, size, global) of each function symbol of an ELF64 object."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != _SHT_SYMTAB:
            continue
        names = sections[link][4]
        for at in range(offset, offset + size, entsize):
            name_at, info, _, shndx, value, length = struct.unpack_from("<IBBHQQ", elf, at)
            if info & 0xF == _STT_FUNC and length:
                end = elf.index(b"\0", names + name_at)
                yield elf[names + name_at:end].decode(), shndx, value, length, info >> 4 == _STB_GLOBAL


def write(object_code: bytes, address: Callable[[str], int]) -> None:
    """Append the object's functions, placed by `address(global name)`, to this process's map."""
    functions = list(_functions(object_code))
    bases = {}
    for name, section, offset, _, is_global in functions:
        if is_global and section not in bases:
            bases[section] = address(name) - offset
    lines = [f"{bases[section] + offset:x} {size:x} {name}\n"
             for name, section, offset, size, _ in functions if section in bases]
    with open(f"/tmp/perf-{os.getpid()}.map", "a") as out:
        out.writelines(lines)
