import pytest

_SCAN_LOWERS: list[bool] = []


def scan_lowers() -> bool:
    """Whether this build compiles `scan` to native code (tried once, on a tiny LSTM)."""
    import nncompile
    from nncompile import keras
    from nncompile.ir import IRError

    if not _SCAN_LOWERS:
        inputs = keras.Input((2, 1))
        graph = nncompile.trace(keras.Model(inputs, keras.layers.LSTM(1)(inputs)))
        try:
            nncompile.compile(graph)
            _SCAN_LOWERS.append(True)
        except IRError as e:
            if "no CPU lowering" not in str(e):
                raise
            _SCAN_LOWERS.append(False)
    return _SCAN_LOWERS[0]


@pytest.fixture(params=["reference", "cpu"])
def rnn_backend(request, monkeypatch):
    """Recurrent models run on the numpy interpreter, and compiled once the CPU code generator
    lowers `scan` (its native loop)."""
    if request.param == "cpu" and not scan_lowers():
        pytest.skip("scan has no CPU lowering in this build yet")
    monkeypatch.setenv("NNCOMPILE_BACKEND", request.param)
    return request.param
