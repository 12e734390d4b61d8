"""The file boundary: atomic writes, and one clear error for anything wrong with a file.

Every reader runs inside `reading(path)`: an h5py, zipfile, json or numpy failure on a bad file
becomes one `SavingError` (a ValueError) naming the file, never a library traceback. Every writer
goes through `atomic_write`: the new file is written next to the old one and renamed over it, so
an interrupted save leaves the previous file intact. A save killed before its rename leaves its
temporary behind; the temporary's name says which host and process wrote it, so the next save of
the same target removes those whose writer is gone (as vim does with its swap files).
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from typing import Callable, Iterator


class SavingError(ValueError):
    """A model file cannot be read or written; the message names the file (and layer, weight)."""


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def fail(path: str, message: str) -> SavingError:
    """The error for `path`: '<message>' with the file named first."""
    return SavingError(one_line(f"Cannot load '{path}': {message}"))


def require_file(path: str, kind: str) -> None:
    """OSError (as Keras raises) when `path` is not an existing file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"File not found: filepath={path}. Please ensure the file is an "
                                f"accessible {kind} file.")


@contextlib.contextmanager
def reading(path: str, kind: str) -> Iterator[None]:
    """Turn any failure while reading `path` into one SavingError naming it."""
    try:
        yield
    except SavingError:
        raise
    except (KeyboardInterrupt, SystemExit, FileNotFoundError):
        raise
    except Exception as e:   # h5py, zipfile, json, numpy, layer constructors: all one boundary
        reason = one_line(e) or type(e).__name__
        raise fail(path, f"not a valid {kind} file or model ({type(e).__name__}: {reason})") from None


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call `write(temp_path)`, fsync the result, then rename it onto `path` in one step.

    On any failure the temporary file is removed and `path` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot save to '{path}': it is a directory; expected a file path")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"Cannot save to '{path}': '{folder}' is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        target = os.path.basename(path)
        _remove_stale_temps(folder, target)
        handle, temp = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{os.getpid()}.",
                                        suffix=_TEMP_SUFFIX, dir=folder)
    except OSError as e:
        raise type(e)(e.errno, f"Cannot save to '{path}': folder '{folder}' cannot hold it "
                               f"({e.strerror})") from None
    os.close(handle)
    try:
        write(temp)
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(temp, _file_mode(path))
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise


_TEMP_SUFFIX = ".tmp"


def _temp_prefix(target: str) -> str:
    """What the temporaries of `target` written on this host start with; the writer's pid and a
    random part follow. The host is named because on a shared folder another machine's pids
    mean nothing here: its temporaries are never judged, so never removed, from this one."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
    return f".{target}.{host}."


def _remove_stale_temps(folder: str, target: str) -> None:
    """Remove the temporaries of `target` left by writers of this host that no longer run.

    Best effort: a temporary another process removes first, or one we may not remove, stays
    that process's business and never fails this save."""
    pattern = re.compile(re.escape(_temp_prefix(target)) + r"([0-9]+)\.[^./]+" + re.escape(_TEMP_SUFFIX))
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            match = pattern.fullmatch(name)
            if match and not _process_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))


def _process_alive(pid: int) -> bool:
    """Whether process `pid` exists (signal 0 checks without sending anything). A pid reused by
    an unrelated process keeps a stale temporary until that one ends, never the other way."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:   # alive, owned by another user
        return True
    return True


def _file_mode(path: str) -> int:
    """The permissions `open(path, "w")` would give: the replaced file's, else 0o666 less the
    umask (mkstemp makes its file 0o600, which would hide a saved model from other users)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def check_overwrite(path: str, overwrite: bool) -> None:
    """Keras asks on a terminal before replacing a file when `overwrite=False`; nncompile never
    prompts, it refuses."""
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"File '{path}' already exists and overwrite=False; pass "
                              f"overwrite=True to replace it.")
