"""ONNX models run by ONNX Runtime and by nncompile in one run, printed as a table of ratios.

    python benchmarks/onnx.py        # the fixtures; with torch installed also a ResNet-style CNN
                                     # and a transformer encoder layer at realistic sizes

Rows: every model of tests/fixtures/onnx (at the batch it was exported with, or batch 1 and 32
when its batch is dynamic), and, when torch is importable, a ResNet-style CNN (64x64x3, three
stages of residual blocks, dynamic batch) and a transformer encoder layer (d 256, 4 heads, ff
1024, 64 tokens, exported at batch 1 and at batch 32), exported on the fly: batch-1 latency and
batch-32 throughput. The ratio is
ONNX Runtime's time over nncompile's (above 1: nncompile is faster). Both use the machine's cores.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import sys
import tempfile

# Run as a script, this file's folder comes first on sys.path, and this file would be `onnx`.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

import nncompile  # noqa: E402
import nncompile.onnx  # noqa: E402
_host = importlib.util.spec_from_file_location("host", os.path.join(HERE, "host.py"))   # HERE is off sys.path
cpu_model = importlib.util.module_from_spec(_host)
_host.loader.exec_module(cpu_model)
cpu_model = cpu_model.cpu_model


def _shared_timer():
    spec = importlib.util.spec_from_file_location("benchmarks_cpu", os.path.join(HERE, "cpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.median_seconds


median_seconds = _shared_timer()

FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "onnx")


def torch_models(folder: str) -> list[str]:
    """A ResNet-style CNN and a transformer encoder layer exported with a dynamic batch."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return []

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                                   nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
            self.skip = nn.Sequential() if stride == 1 and c_in == c_out else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            return torch.relu(self.a(x) + self.skip(x))

    torch.manual_seed(0)
    resnet = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), Block(32, 32, 1), Block(32, 64, 2),
                           Block(64, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
    encoder = nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, activation="gelu", batch_first=True)
    # The transformer is exported per batch size: with a dynamic batch, its attention reshapes
    # to batch * heads, a product of a symbol the IR's shapes cannot express.
    dynamic = ({0: torch.export.Dim("batch", min=1, max=64)},)
    paths = []
    for name, module, x, shapes in (("resnet_style", resnet, torch.randn(2, 3, 64, 64), dynamic),
                                    ("transformer_layer_b1", encoder, torch.randn(1, 64, 256), None),
                                    ("transformer_layer_b32", encoder, torch.randn(32, 64, 256), None)):
        path = os.path.join(folder, f"{name}.onnx")
        module.eval()
        torch.onnx.export(module, (x,), path, dynamo=True, input_names=["x"], output_names=["y"],
                          dynamic_shapes=shapes)
        paths.append(path)
    return paths


def rows(path: str):
    """(name, batch, ORT seconds, nncompile seconds) for each batch the model runs at."""
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    exe = nncompile.compile(nncompile.onnx.load(path))
    (spec,) = session.get_inputs()
    dynamic = isinstance(spec.shape[0], str)
    for batch in ((1, 32) if dynamic else (spec.shape[0],)):
        shape = [batch] + [int(d) for d in spec.shape[1:]]
        rng = np.random.default_rng(0)
        if "int" in spec.type:   # token ids (the LSTM fixture), within any vocabulary of 10 or more
            x = rng.integers(0, 10, shape).astype(np.int64 if "int64" in spec.type else np.int32)
        else:
            x = rng.standard_normal(shape).astype(np.float32)
        want = session.run(None, {spec.name: x})[0]
        got = exe.run({spec.name: x})[session.get_outputs()[0].name]
        assert np.allclose(got, want, rtol=1e-3, atol=1e-4), f"{path}: results differ"
        t_ort = median_seconds(lambda: session.run(None, {spec.name: x}))
        t_nnc = median_seconds(lambda: exe(x))   # positional: run() with a dict adds ~15 us
        yield os.path.basename(path)[:-len(".onnx")], batch, t_ort, t_nnc


def main() -> None:
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}")
    print(f"{'model':32} {'batch':>5} {'ORT ms':>9} {'nncompile ms':>13} {'ORT/nncompile':>14}")
    with tempfile.TemporaryDirectory() as folder:
        paths = sorted(glob.glob(os.path.join(FIXTURES, "*.onnx"))) + torch_models(folder)
        for path in paths:
            for name, batch, t_ort, t_nnc in rows(path):
                print(f"{name:32} {batch:>5} {t_ort * 1e3:>9.3f} {t_nnc * 1e3:>13.3f} {t_ort / t_nnc:>13.2f}x")


if __name__ == "__main__":
    main()
