"""Count how many of ONNX's node test cases nncompile passes, the whole suite (run by hand:
`python -m tests.onnx.backend_count`; the README quotes its last line)."""
from __future__ import annotations

import collections
import warnings

from onnx.backend.test.runner import Runner

from tests.onnx.backend import Backend, node_cases
from tests.onnx.test_backend import _arrays


def main() -> None:
    passed, reasons = 0, collections.Counter()
    cases = node_cases()
    for case in cases:
        try:
            rep = Backend.prepare(case.model)
            for inputs, outputs in case.data_sets:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    got = rep.run(_arrays(inputs))
                Runner.assert_similar_outputs(_arrays(outputs), got, rtol=case.rtol, atol=case.atol)
        except Exception as e:  # noqa: BLE001 - every failure is counted by its kind
            reasons[type(e).__name__] += 1
        else:
            passed += 1
    print(f"failures by kind: {dict(reasons.most_common())}")
    print(f"{passed} passed of {len(cases)} ONNX node test cases ({100 * passed / len(cases):.1f} %)")


if __name__ == "__main__":
    main()
