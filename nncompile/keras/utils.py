"""Utilities of `keras.utils`."""
from __future__ import annotations

import hashlib
import math
import os
import random
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Iterable, Sequence

import numpy as np

from nncompile.keras import data

# The clock of the progress bar; a module attribute so that tests can drive it.
_clock = time.time


def set_random_seed(seed: int) -> None:
    """Seed every random source of the front end (Python, numpy, weight initializers).

    >>> from nncompile.keras import utils, initializers
    >>> utils.set_random_seed(1); a = initializers.GlorotUniform()((2, 2))
    >>> utils.set_random_seed(1); b = initializers.GlorotUniform()((2, 2))
    >>> bool((a == b).all())
    True
    """
    from nncompile.keras import initializers

    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"Expected `seed` argument to be an integer. Received: seed={seed!r} "
                         f"(of type {type(seed)})")
    random.seed(seed)
    np.random.seed(seed)
    initializers.reseed(int(seed))


def to_categorical(x, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer class labels: shape `x.shape + (num_classes,)`, float64 as in Keras.

    A trailing axis of size 1 is dropped first, so labels of shape (n, 1) give (n, num_classes).

    >>> to_categorical([0, 2], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.]])
    """
    labels = np.asarray(x)
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"to_categorical expects integer class labels; received an array of "
                         f"dtype {labels.dtype}")
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise ValueError("to_categorical expects integer class labels; received non-integral "
                         f"values such as {labels[labels != np.round(labels)].flat[0]!r}")
    labels = labels.astype("int64")
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if not num_classes:
        if labels.size == 0:
            raise ValueError("to_categorical cannot infer `num_classes` from empty labels; pass "
                             "num_classes=")
        num_classes = int(labels.max()) + 1
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"to_categorical: label {labels[index]} (at flat index {index}) is not in "
                         f"[0, num_classes={num_classes})")
    categorical = np.zeros((labels.shape[0], num_classes))
    categorical[np.arange(labels.shape[0]), labels] = 1
    return categorical.reshape(shape + (num_classes,))


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    """`x` divided by its `order`-norm along `axis` (norms of zero are left as 1, so zero rows
    stay zero).

    >>> normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    x = np.asarray(x)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"normalize: axis={axis} is out of range for an array of rank {x.ndim}")
    norm = np.linalg.norm(x, order, axis, keepdims=True)
    norm[norm == 0] = 1
    return x / norm


def pad_sequences(sequences, maxlen: int | None = None, dtype="int32", padding: str = "pre",
                  truncating: str = "pre", value=0.0) -> np.ndarray:
    """Pad (or truncate) a list of sequences to one length: an array `(len(sequences), maxlen)`
    plus any trailing sample shape. `maxlen` defaults to the longest sequence; padding and
    truncation happen at the start ('pre') or the end ('post').

    >>> pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2)
    array([[0, 1],
           [2, 3],
           [5, 6]], dtype=int32)
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError("`sequences` must be iterable.")
    if padding not in ("pre", "post"):
        raise ValueError(f'Padding type "{padding}" not understood')
    if truncating not in ("pre", "post"):
        raise ValueError(f'Truncating type "{truncating}" not understood')
    lengths, sample_shape = [], None
    for s in sequences:
        try:
            lengths.append(len(s))
        except TypeError as e:
            raise ValueError("`sequences` must be a list of iterables. "
                             f"Found non-iterable: {s}") from e
        if sample_shape is None and len(s):
            sample_shape = np.asarray(s).shape[1:]
    sample_shape = sample_shape or ()
    if maxlen is None:
        maxlen = max(lengths, default=0)
    is_text_dtype = np.issubdtype(dtype, np.str_) or np.issubdtype(dtype, np.bytes_)
    if isinstance(value, str) and dtype is not object and not is_text_dtype:
        raise ValueError(f"`dtype` {dtype} is not compatible with `value`'s type: {type(value)}\n"
                         "You should set `dtype=object` for variable length strings.")
    out = np.full((len(sequences), maxlen) + sample_shape, value, dtype=dtype)
    for index, s in enumerate(sequences):
        if not len(s) or not maxlen:
            continue
        part = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        # Token ids are range-checked into an integer dtype; object and text dtypes take anything.
        kept = (data.cast(np.asarray(part), dtype, f"The sequence at position {index}")
                if np.dtype(dtype).kind in "iu" else np.asarray(part, dtype=dtype))
        if kept.shape[1:] != sample_shape:
            raise ValueError(f"Shape of sample {kept.shape[1:]} of sequence at position {index} "
                             f"is different from expected shape {sample_shape}")
        if padding == "post":
            out[index, :len(kept)] = kept
        else:
            out[index, -len(kept):] = kept
    return out



def _write(message: str) -> None:
    sys.stdout.write(message)
    sys.stdout.flush()


def _format_metric(value: float, signed: bool = True) -> str:
    # Keras switches to scientific notation for small values; the one-line-per-epoch form
    # (verbose=2) compares the signed value, so negative numbers print in e-notation there.
    small = abs(value) <= 1e-3 if signed else value <= 1e-3
    return f" {value:.4e}" if small else f" {value:.4f}"


def _format_time(time_per_unit: float, unit_name: str) -> str:
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1000.0:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1000000.0:.0f}us/{unit_name}"


def _format_eta(eta: float) -> str:
    if eta > 3600:
        return "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
    if eta > 60:
        return "%d:%02d" % (eta // 60, eta % 60)
    return "%ds" % eta


def _interactive_stdout() -> bool:
    """Whether stdout shows a line redrawn in place as one line: a terminal, a notebook or
    PyCharm's console. Keras 3 also counts every POSIX process, which fills files, pipes and CI
    logs with backspaces and colour codes; tf.keras 2 asked `isatty`, as this does."""
    return (getattr(sys.stdout, "isatty", lambda: False)() or "ipykernel" in sys.modules
            or "PYCHARM_HOSTED" in os.environ)


class Progbar:
    """Keras 3's progress bar, byte for byte: verbose=1 redraws one line
    (`16/16 ━━━━━━━━━━━━━━━━━━━━ 0s 2ms/step - loss: 0.6737`, ANSI-styled), at most once every
    `interval` seconds and always on the final update; verbose=2 prints one line when finished
    (`16/16 - 0s - 2ms/step - loss: 0.6737`). When stdout is not interactive (a file, a pipe),
    verbose=1 prints that plain line too. Values of metrics not in `stateful_metrics` are
    averaged over the steps they were reported for; the final update shows them as given.
    """

    def __init__(self, target: int | None, width: int = 20, verbose: int = 1,
                 interval: float = 0.05, stateful_metrics: Iterable[str] | None = None,
                 unit_name: str = "step"):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self._dynamic_display = _interactive_stdout()
        self._seen_so_far = 0
        self._values: dict[str, list[float]] = {}
        self._values_order: list[str] = []
        self._start = _clock()
        self._last_update = 0.0
        self._time_after_first_step: float | None = None
        self._prev_total_width = 0

    def update(self, current: int, values: Sequence[tuple[str, float]] | None = None,
               finalize: bool | None = None) -> None:
        """Advance to step `current` (1-based) with `(name, value)` pairs for this step."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        self._accumulate(current, values or [], finalize)
        self._seen_so_far = current
        now = _clock()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1 and self._dynamic_display:
            if now - self._last_update < self.interval and not finalize:
                return
            self._draw_line(current, now, time_per_unit, finalize)
        elif self.verbose in (1, 2) and finalize:
            # verbose=2, or a bar that cannot be redrawn in place: one plain line at the end.
            target = self.target or current
            digits = int(math.log10(max(target, 1))) + 1
            line = f"{current:{digits}d}/{target} - {now - self._start:.0f}s"
            line += f" -{_format_time(time_per_unit, self.unit_name)}"
            line += "".join(f" - {k}:{_format_metric(self._average(k), signed=False)}"
                            for k in self._values_order)
            _write(line + "\n")
        self._last_update = now

    def add(self, n: int, values: Sequence[tuple[str, float]] | None = None) -> None:
        """Advance by `n` steps."""
        self.update(self._seen_so_far + n, values)

    def _accumulate(self, current: int, values, finalize: bool) -> None:
        for name, value in values:
            if name not in self._values_order:
                self._values_order.append(name)
            if name in self.stateful_metrics or finalize:
                self._values[name] = [value, 1]
                continue
            weight = max(current - self._seen_so_far, 1)
            total = self._values.setdefault(name, [0.0, 0])
            total[0] += value * weight
            total[1] += weight

    def _average(self, name: str) -> float:
        total, count = self._values[name]
        return float(np.mean(total)) / max(1, count)

    def _draw_line(self, current: int, now: float, time_per_unit: float, finalize: bool) -> None:
        message = "\b" * self._prev_total_width + "\r"
        # ANSI escapes (bold, green, grey) take no columns: `hidden` counts their characters.
        hidden = 0
        if self.target:
            digits = int(math.log10(self.target)) + 1
            bar = f"\x1b[1m{current:{digits}d}/{self.target}\x1b[0m "
            hidden += 8
            done = int(self.width * float(current) / self.target)
            if done > 0:
                bar += f"\33[32m{'━' * done}\x1b[0m"
                hidden += 9
            bar += f"\33[37m{'━' * (self.width - done)}\x1b[0m"
            hidden += 9
        else:
            bar = "%7d/Unknown" % current
        if self.target and not finalize:
            info = f" \x1b[1m{_format_eta(time_per_unit * (self.target - current))}\x1b[0m"
        else:
            info = f" \x1b[1m{now - self._start:.0f}s\x1b[0m"
        hidden += 8
        info += _format_time(time_per_unit, self.unit_name)
        info += "".join(f" - {k}:{_format_metric(self._average(k))}" for k in self._values_order)
        total_width = len(bar) + len(info) - hidden
        message += bar + info + " " * max(self._prev_total_width - total_width, 0)
        _write(message + ("\n" if finalize else ""))
        self._prev_total_width = total_width

    def _estimate_step_duration(self, current: int, now: float) -> float:
        # The first step (tracing, compiling, warming caches) is left out once there are others.
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit


def keras_home() -> str:
    """Keras's home folder: `$KERAS_HOME`, else `~/.keras` (`/tmp/.keras` when home is read-only)."""
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    return os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")


def hash_file(fpath: str, algorithm: str = "sha256", chunk_size: int = 65535) -> str:
    """The hex digest of a file: 'sha256' or 'md5' ('auto' means sha256)."""
    hasher = hashlib.md5() if algorithm == "md5" else hashlib.sha256()
    with open(fpath, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def validate_file(fpath: str, file_hash: str, algorithm: str = "auto") -> bool:
    """Whether the file's hash is `file_hash`; 'auto' takes a 64-digit hash as sha256, else md5."""
    if algorithm == "auto":
        algorithm = "sha256" if len(file_hash) == 64 else "md5"
    return hash_file(fpath, algorithm) == str(file_hash)


def _download(origin: str, target: str) -> None:
    bar: list[Progbar] = []

    def report(block_num: int, block_size: int, total_size: int) -> None:
        if not bar:
            bar.append(Progbar(total_size if total_size > 0 else None))
        progbar = bar[0]
        if progbar.target is None or progbar._seen_so_far < progbar.target:
            seen = block_num * block_size
            progbar.update(min(seen, progbar.target) if progbar.target else seen)

    _write(f"Downloading data from {origin}\n")
    try:
        urllib.request.urlretrieve(origin, target, report)
    except BaseException:
        if os.path.exists(target):
            os.remove(target)
        raise


def _fetch(origin: str, target: str, stale: str) -> None:
    try:
        _download(origin, target)
    except OSError as e:  # urllib's URLError and HTTPError are OSErrors
        reason = f"{e.code} -- {e.msg}" if isinstance(e, urllib.error.HTTPError) else \
            str(getattr(e, "reason", e))
        raise OSError(f"{stale}URL fetch failure on {origin}: {reason}. Without network access, "
                      f"download that file by other means and put it at {target} (the cache "
                      "folder is $KERAS_HOME/datasets, or ~/.keras/datasets when KERAS_HOME is "
                      "not set).") from e


def _safe_members(members, into: str):
    # Archive entries must land inside the extraction folder: no absolute paths, no '..', no
    # links pointing out (hard links resolve from the archive root, symbolic ones from their
    # own folder).
    root = os.path.realpath(into)
    for member in members:
        name = member.filename if isinstance(member, zipfile.ZipInfo) else member.name
        paths = [name]
        if isinstance(member, tarfile.TarInfo) and member.islnk():
            paths.append(member.linkname)
        elif isinstance(member, tarfile.TarInfo) and member.issym():
            paths.append(os.path.join(os.path.dirname(name), member.linkname))
        for path in paths:
            if os.path.commonpath([root, os.path.realpath(os.path.join(root, path))]) != root:
                raise ValueError(f"Refusing to extract archive entry {name!r}: it leaves {into}")
        yield member


def extract_archive(file_path: str, path: str = ".", archive_format="auto") -> bool:
    """Extract a tar (.tar, .tar.gz, .tar.bz2) or zip archive into `path`; False if the file is
    none of the allowed formats ('auto' = tar then zip, 'tar', 'zip', a list, or None)."""
    formats = ["tar", "zip"] if archive_format == "auto" else archive_format or []
    for kind in [formats] if isinstance(formats, str) else formats:
        if kind == "tar" and tarfile.is_tarfile(file_path):
            with tarfile.open(file_path) as archive:
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                archive.extractall(path, members=list(_safe_members(archive.getmembers(), path)),
                                   **extra)
            return True
        if kind == "zip" and zipfile.is_zipfile(file_path):
            with zipfile.ZipFile(file_path) as archive:
                archive.extractall(path, members=list(_safe_members(archive.infolist(), path)))
            return True
    return False


def _cache_paths(datadir: str, fname: str, given: bool, extracting: bool) -> tuple[str, str]:
    """Keras's names: (the downloaded file, the extraction folder)."""
    if not extracting:
        return os.path.join(datadir, fname), ""
    if given and "." in fname:
        return (os.path.join(datadir, fname),
                os.path.join(datadir, f"{fname[:fname.find('.')]}_extracted"))
    return os.path.join(datadir, f"{fname}_archive"), os.path.join(datadir, fname)


def get_file(fname: str | None = None, origin: str | None = None, untar: bool = False,
             md5_hash: str | None = None, file_hash: str | None = None,
             cache_subdir: str = "datasets", hash_algorithm: str = "auto", extract: bool = False,
             archive_format="auto", cache_dir: str | None = None,
             force_download: bool = False) -> str:
    """The local path of the file at `origin`, downloaded into `<cache_dir>/<cache_subdir>/fname`
    unless a copy with the right hash is already there (Keras's cache layout, `cache_dir`
    defaulting to `keras_home()`). With `extract`/`untar` the archive is kept as
    `<fname>_archive` (or `fname` when it has an extension) and unpacked into a folder whose path
    is returned. Offline, or when the download fails, one OSError says which file to put where;
    a downloaded file with the wrong hash is a ValueError.
    """
    if origin is None:
        raise ValueError('Please specify the "origin" argument (URL of the file to download).')
    if md5_hash is not None and file_hash is None:
        file_hash, hash_algorithm = md5_hash, "md5"
    datadir = os.path.join(os.path.expanduser(cache_dir or keras_home()), cache_subdir)
    os.makedirs(datadir, exist_ok=True)
    given = fname is not None
    fname = os.fspath(fname) if given else os.path.basename(urllib.parse.urlsplit(origin).path)
    if not fname:
        raise ValueError(f"Can't parse the file name from the origin provided: '{origin}'."
                         "Please specify the `fname` argument.")
    if os.sep in fname:
        raise ValueError("Paths are no longer accepted as the `fname` argument. To specify the "
                         "file's parent directory, use the `cache_dir` argument. "
                         f"Received: fname={fname}")
    target, extraction_dir = _cache_paths(datadir, fname, given, extract or untar)
    stale = ""
    if (os.path.exists(target) and file_hash is not None
            and not validate_file(target, file_hash, hash_algorithm)):
        stale = (f"A local file was found at {target}, but it seems to be incomplete or outdated "
                 f"because the {hash_algorithm} file hash does not match the original value of "
                 f"{file_hash}. ")
        _write(stale + "We will re-download the data.\n")
    if force_download or stale or not os.path.exists(target):
        _fetch(origin, target, stale)
        if file_hash is not None and not validate_file(target, file_hash, hash_algorithm):
            os.remove(target)
            raise ValueError(f"Incomplete or corrupted file detected. The {hash_algorithm} file "
                             f"hash does not match the provided value of {file_hash} "
                             f"(downloaded from {origin}; removed).")
    if not extraction_dir:
        return target
    archive_format = "tar" if untar else archive_format
    if not extract_archive(target, extraction_dir, archive_format):
        raise ValueError(f"Could not extract archive {target}: not a {archive_format} archive")
    return extraction_dir
