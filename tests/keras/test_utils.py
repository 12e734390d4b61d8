"""keras.utils against numpy written here: to_categorical, normalize, pad_sequences, get_file."""
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile.keras import utils
from nncompile.keras.preprocessing.sequence import pad_sequences as legacy_pad_sequences


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=12), st.booleans())
def test_to_categorical_matches_identity_rows(labels, column):
    y = np.array(labels).reshape(-1, 1) if column else np.array(labels)
    expected = np.eye(max(labels) + 1)[labels]
    np.testing.assert_array_equal(utils.to_categorical(y), expected)
    np.testing.assert_array_equal(utils.to_categorical(y, num_classes=9), np.eye(9)[labels])


def test_to_categorical_keeps_leading_axes_and_takes_float_labels():
    y = np.array([[0.0, 2.0], [1.0, 1.0]])
    out = utils.to_categorical(y)
    assert out.shape == (2, 2, 3) and out.dtype == np.float64
    np.testing.assert_array_equal(out[0, 1], [0, 0, 1])


@pytest.mark.parametrize("labels, num_classes, message", [
    ([0, 3], 3, r"label 3 \(at flat index 1\) is not in \[0, num_classes=3\)"),
    ([-1, 0], None, "label -1"),
    ([0.5, 1.0], None, "non-integral"),
    (["a"], None, "integer class labels"),
    ([], None, "empty"),
])
def test_to_categorical_errors(labels, num_classes, message):
    with pytest.raises(ValueError, match=message):
        utils.to_categorical(labels, num_classes)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(0, 2),
       st.sampled_from([1, 2, np.inf]), st.integers(0, 2 ** 31))
def test_normalize_divides_by_the_norm_along_the_axis(shape, axis_pick, order, seed):
    x = np.random.default_rng(seed).normal(size=shape)
    axis = axis_pick % len(shape) - len(shape) * (seed % 2)  # positive and negative axes
    if order == 1:
        norm = np.abs(x).sum(axis=axis, keepdims=True)
    elif order == 2:
        norm = np.sqrt((x * x).sum(axis=axis, keepdims=True))
    else:
        norm = np.abs(x).max(axis=axis, keepdims=True)
    np.testing.assert_allclose(utils.normalize(x, axis=axis, order=order), x / norm, rtol=1e-12)


def test_normalize_leaves_zero_vectors_at_zero_and_checks_the_axis():
    np.testing.assert_array_equal(utils.normalize(np.array([[0.0, 0.0], [0.0, 2.0]])),
                                  [[0.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="axis=2"):
        utils.normalize(np.ones((2, 2)), axis=2)


def _pad_reference(sequences, maxlen, padding, truncating, value):
    maxlen = max(map(len, sequences), default=0) if maxlen is None else maxlen
    rows = []
    for s in sequences:
        s = list(s)
        if len(s) > maxlen:
            s = s[len(s) - maxlen:] if truncating == "pre" else s[:maxlen]
        pad = [value] * (maxlen - len(s))
        rows.append(pad + s if padding == "pre" else s + pad)
    return np.array(rows, dtype="int32").reshape(len(sequences), maxlen)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(1, 99), max_size=7), min_size=1, max_size=6),
       st.one_of(st.none(), st.integers(0, 8)), st.sampled_from(["pre", "post"]),
       st.sampled_from(["pre", "post"]), st.integers(-3, 0))
def test_pad_sequences_matches_a_list_reference(sequences, maxlen, padding, truncating, value):
    out = utils.pad_sequences(sequences, maxlen=maxlen, padding=padding, truncating=truncating,
                              value=value)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, _pad_reference(sequences, maxlen, padding, truncating,
                                                      value))


def test_pad_sequences_keeps_sample_shape_dtype_and_legacy_path():
    out = utils.pad_sequences([np.ones((1, 2)), np.zeros((3, 2))], dtype="float32", value=-1.0)
    assert out.shape == (2, 3, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], [[-1, -1], [-1, -1], [1, 1]])
    assert legacy_pad_sequences is utils.pad_sequences


def test_pad_sequences_never_wraps_a_token_id_into_int32():
    ids = [np.array([3, 2**32 + 3], np.int64)]
    with pytest.raises(ValueError, match=r"sequence at position 0 holds the value 4294967299, "
                                         r"which int32 .* cannot hold"):
        utils.pad_sequences(ids)
    assert utils.pad_sequences(ids, dtype="int64").tolist() == [[3, 2**32 + 3]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(sequences=[[1], 2]), "non-iterable: 2"),
    (dict(sequences=[[1]], padding="middle"), 'Padding type "middle"'),
    (dict(sequences=[[1]], truncating="both"), 'Truncating type "both"'),
    (dict(sequences=[[1]], value="x"), "dtype=object"),
    (dict(sequences=[[[1, 2]], [[1, 2, 3]]]), "position 1"),
    (dict(sequences=5), "must be iterable"),
])
def test_pad_sequences_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        utils.pad_sequences(**kwargs)


@pytest.fixture
def offline(monkeypatch):
    """No network: any download attempt fails like a machine without a connection."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)


def serve(monkeypatch, payload: bytes):
    """A fake network that answers every download with `payload`."""
    def retrieve(origin, target, report):
        with open(target, "wb") as f:
            f.write(payload)
        report(1, len(payload), len(payload))
    monkeypatch.setattr(urllib.request, "urlretrieve", retrieve)


def test_get_file_uses_a_cached_file_with_the_right_hash(tmp_path, offline):
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "a.txt").write_bytes(b"hello")
    md5 = hashlib.md5(b"hello").hexdigest()
    sha = hashlib.sha256(b"hello").hexdigest()
    for file_hash in (md5, sha):
        path = utils.get_file("a.txt", origin="https://x/a.txt", file_hash=file_hash,
                              cache_dir=str(tmp_path))
        assert path == str(tmp_path / "datasets" / "a.txt")


def test_get_file_offline_says_which_file_to_put_where(tmp_path, offline):
    with pytest.raises(OSError) as error:
        utils.get_file(origin="https://host/dir/b.npz", cache_dir=str(tmp_path))
    message = str(error.value)
    assert "https://host/dir/b.npz" in message and str(tmp_path / "datasets" / "b.npz") in message


def test_get_file_downloads_checks_and_removes_a_corrupt_download(tmp_path, monkeypatch, capsys):
    serve(monkeypatch, b"payload")
    path = utils.get_file("c.bin", origin="https://h/c.bin", cache_dir=str(tmp_path),
                          file_hash=hashlib.sha256(b"payload").hexdigest())
    assert open(path, "rb").read() == b"payload"
    assert capsys.readouterr().out.startswith("Downloading data from https://h/c.bin\n")
    with pytest.raises(ValueError, match="Incomplete or corrupted file"):
        utils.get_file("d.bin", origin="https://h/d.bin", cache_dir=str(tmp_path),
                       file_hash=hashlib.sha256(b"other").hexdigest())
    assert not (tmp_path / "datasets" / "d.bin").exists()


def _tar_bytes(members: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_get_file_extracts_tar_and_zip_archives(tmp_path, monkeypatch):
    serve(monkeypatch, _tar_bytes({"top/x.txt": b"x"}))
    folder = utils.get_file("pack", origin="https://h/pack.tar.gz", cache_dir=str(tmp_path),
                            extract=True)
    assert folder == str(tmp_path / "datasets" / "pack")
    assert (tmp_path / "datasets" / "pack" / "top" / "x.txt").read_bytes() == b"x"
    assert (tmp_path / "datasets" / "pack_archive").exists()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("y.txt", "y")
    serve(monkeypatch, buffer.getvalue())
    folder = utils.get_file("z.zip", origin="https://h/z.zip", cache_dir=str(tmp_path),
                            extract=True)
    assert (tmp_path / "datasets" / "z_extracted" / "y.txt").read_text() == "y"


def test_extract_archive_refuses_entries_that_leave_the_folder(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_bytes({"../escaped.txt": b"x"}))
    with pytest.raises(Exception, match="escaped.txt"):
        utils.extract_archive(str(archive), str(tmp_path / "out"))
    assert not (tmp_path / "escaped.txt").exists()


def test_keras_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert utils.keras_home() == str(tmp_path)
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert utils.keras_home() == str(tmp_path / ".keras")


def test_the_other_names_keras_3_gives_these():
    """Tutorials reach for `keras.Layer`, `keras.utils.register_keras_serializable`,
    `keras.utils.clear_session`, `keras.activations.swish` and `keras.backend.backend()`."""
    from nncompile import keras
    assert keras.Layer is keras.layers.Layer
    assert keras.utils.register_keras_serializable is keras.saving.register_keras_serializable
    keras.layers.Dense(1)
    keras.utils.clear_session()
    assert keras.layers.Dense(1).name == "dense"
    x = np.array([-2.0, 0.5, 3.0], np.float32)
    np.testing.assert_allclose(keras.activations.swish(x), x / (1 + np.exp(-x)), rtol=1e-6)
    assert keras.activations.get("swish") is keras.activations.swish is keras.activations.silu
    assert keras.backend.backend() == "nncompile"
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        keras.utils.no_such_thing
