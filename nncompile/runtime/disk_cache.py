"""The disk cache of machine code: one entry per compiled module (its object file, or the object
files of a module compiled in parts, packed), checked before use.

An entry is `<key>.o` in `directory()` (`<key><suffix>` for other kinds of entry: the GEMM
blocking `nncompile tune` measured, `codegen/blocking.py`): a header (magic, the object's
length, a BLAKE2b digest of the key and the object) followed by the object file. `read` hands
back the object only when the entry is a regular file no larger than `MAX_OBJECT_BYTES` plus its
header, its length matches and its digest matches the key and the bytes; anything else (a truncated, bit-flipped or foreign
entry, another model's object renamed, a FIFO, a device, a link to one, a directory) is a miss,
and the compile that follows replaces it. LLVM never sees bytes that nncompile did not write for
this key, so no corrupt entry can crash the process or serve wrong code.

The key (`entry_key`) covers everything that decides the generated code: the scheduled graph
(with the GEMM tiling in use, which `runtime.cpu` adds to it), the source of the whole nncompile
package, the LLVM version and the CPU name and features code is made for (NNCOMPILE_CPU's level
when it forces one).
"""
from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import stat
import struct
import tempfile
from typing import Callable

import llvmlite
import llvmlite.binding as llvm

from nncompile.codegen.target import host_cpu

MAGIC = b"nncompile-obj-1\n"
_HEADER = struct.Struct(f"<{len(MAGIC)}sQ32s")
# Larger objects are neither written nor read: a model's machine code is a few MB at most (the
# weights are bound at run time, not compiled in), and the bound keeps a huge or endless file
# (a sparse file, /dev/zero) from being read into memory.
MAX_OBJECT_BYTES = 64 << 20


def directory() -> pathlib.Path:
    """NNCOMPILE_CACHE_DIR, default ~/.cache/nncompile."""
    return pathlib.Path(os.environ.get("NNCOMPILE_CACHE_DIR") or pathlib.Path.home() / ".cache" / "nncompile")


@functools.cache
def package_fingerprint() -> str:
    """A hash of every source file of the package: code cached by another version is never used."""
    root = pathlib.Path(__file__).resolve().parent.parent
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def entry_key(module_identity: str) -> str:
    """The cache key of a module identified by `module_identity` (the scheduled graph and its
    buffer layout), on this package version, this LLVM and this CPU."""
    cpu, features = host_cpu()
    text = "\n".join([module_identity, package_fingerprint(), llvmlite.__version__,
                      ".".join(map(str, llvm.llvm_version_info)), cpu, features])
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _digest(key: str, obj: bytes) -> bytes:
    return hashlib.blake2b(key.encode() + b"\0" + obj, digest_size=32).digest()


def read(key: str, suffix: str = ".o", folder: str = "") -> bytes | None:
    """The object file (or other entry: `suffix`) cached under `key`, in `folder` of the cache
    ("library" holds the host's kernel library, which outlives any model), or None when there is
    no sound entry."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: a link is not an entry
        fd = os.open(directory() / folder / f"{key}{suffix}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not _HEADER.size < info.st_size <= _HEADER.size + MAX_OBJECT_BYTES:
            return None
        data = _read_at_most(fd, info.st_size + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) != info.st_size:
        return None   # the file changed while being read
    magic, length, digest = _HEADER.unpack_from(data)
    obj = data[_HEADER.size:]
    if magic != MAGIC or length != len(obj) or digest != _digest(key, obj):
        return None
    return obj


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(limit - total, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def write(key: str, obj: bytes, suffix: str = ".o", folder: str = "") -> None:
    """Store `obj` under `key` (as `<key><suffix>` in `folder`): written to a temporary file,
    flushed to disk, then renamed over the entry, so a reader sees the old entry or the whole new
    one, even after a power loss.
    Failing to write (a read-only or full disk) only costs the next process a compile."""
    if len(obj) > MAX_OBJECT_BYTES:
        return
    where = directory() / folder
    tmp = None
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=where, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(_HEADER.pack(MAGIC, len(obj), _digest(key, obj)))
            f.write(obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, where / f"{key}{suffix}")
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            _remove(tmp)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


HOST_FOLDER = "library"
"""The folder of the code every model of a host shares (the kernel library, the thread pool),
which outlives any model."""


def host_object_code(identity: str, compile_module: Callable[[], bytes]) -> bytes:
    """The machine code of host-wide code identified by `identity` (its name, and what else
    decides it): from HOST_FOLDER when there is a sound entry, else `compile_module()`, kept."""
    key = entry_key(identity)
    cached = read(key, folder=HOST_FOLDER)
    if cached is not None:
        return cached
    obj = compile_module()
    write(key, obj, folder=HOST_FOLDER)
    return obj

