"""Files of `keras.utils`: `get_file` (download into Keras's cache), hashes, archives."""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from nncompile.keras.utils.progbar import Progbar, _write


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
