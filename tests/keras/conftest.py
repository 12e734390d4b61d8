import pytest


@pytest.fixture(params=["reference", "cpu"])
def rnn_backend(request, monkeypatch):
    """Recurrent models run on the numpy interpreter and compiled (the scan's native loop)."""
    monkeypatch.setenv("NNCOMPILE_BACKEND", request.param)
    return request.param
