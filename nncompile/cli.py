"""The `nncompile` command.

    nncompile demo        build a small Keras-style model, print its summary, IR and a prediction
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

import nncompile


def _demo(args: argparse.Namespace) -> int:
    from nncompile import keras

    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([
        keras.Input(shape=(8,)),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ], name="pima_mlp")
    model.summary()
    graph = nncompile.trace(model)
    print("\nThe traced inference graph (nncompile IR):\n")
    print(graph)
    x = np.random.default_rng(args.seed).normal(size=(4, 8)).astype(np.float32)
    probabilities = model.predict(x, verbose=0).ravel()
    print("\npredict on 4 random samples:", ", ".join(f"{p:.4f}" for p in probabilities))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nncompile",
        description="Trace Keras-style neural networks into a typed IR, run passes over it, and inspect every step.",
        epilog="Example: nncompile demo")
    parser.add_argument("--version", action="version", version=f"nncompile {nncompile.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="trace a small model, print its summary, IR and a prediction",
        description="Build the Pima 8-12-8-1 MLP with nncompile.keras, print its summary, the IR it "
                    "traces to, and its prediction on random inputs.",
        epilog="Example: nncompile demo --seed 7")
    demo.add_argument("--seed", type=int, default=0, help="random seed for weights and inputs")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as e:
        if args.debug:
            raise
        print(f"nncompile {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
