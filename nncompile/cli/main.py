"""The `nncompile` command: argument parsing and error handling (the work is in commands.py).

Exit status: 0 ok, 1 a model or input error (one line on stderr: `nncompile CMD: error: ...`;
the traceback only with --debug), 2 a usage error (argparse).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import nncompile
from nncompile.cli import commands
from nncompile.cli.demo import demo
from nncompile.cli.tune import tune

MODEL_HELP = "the model: a Keras file (.h5, .keras), an ONNX model (.onnx) or IR text (.nnir)"
NNIR_PARAMS = ("IR text holds no parameter values: they come from --params FILE.npz (one array per "
               "parameter name, as `compile -o` writes), and any parameter the file lacks is filled "
               "deterministically (normal, std 0.1, seeded by --seed and the parameter's name).")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _common(debug_default) -> argparse.ArgumentParser:
    """--debug, accepted before and after the subcommand (SUPPRESS keeps the subcommand from
    overwriting a --debug given before it)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--debug", action="store_true", default=debug_default,
                        help="show the full traceback on errors")
    return parser


def _model_args(sub: argparse.ArgumentParser, *, batch_help: str | None, training: bool) -> None:
    sub.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    if batch_help:
        sub.add_argument("--batch", metavar="N", help=batch_help)
        sub.add_argument("--size", metavar="NAME=N", action="append", default=[],
                         help="fix another symbolic dimension of the inputs (a sequence length, "
                              "named in their types) to N; repeatable")
    if training:
        sub.add_argument("--training", action="store_true",
                         help="the training step graph (forward, loss, backward, optimizer update) of a "
                              "Keras file saved after compile(); selects the 'training' pipeline")


def _pass_args(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--pipeline", metavar="NAME",
                     help="the pass pipeline (default 'inference', 'training' with --training); "
                          "see `nncompile passes`")
    sub.add_argument("--passes", metavar="PASS[,PASS]",
                     help="run exactly these passes instead of a pipeline (replay a dumped file)")


def _param_args(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--params", metavar="FILE.npz", help="parameter values for an .nnir model")
    sub.add_argument("--seed", type=int, default=0,
                     help="seed of the parameters an .nnir model leaves unset (and of bench inputs)")


def _add(commands_: argparse._SubParsersAction, name: str, help: str, description: str,
         example: str) -> argparse.ArgumentParser:
    return commands_.add_parser(name, help=help, description=description, epilog=f"Example:\n  {example}",
                                parents=[_common(argparse.SUPPRESS)], formatter_class=_formatter)


def _summary_parser(cmds) -> None:
    sub = _add(cmds, "summary", "the Keras summary, plus ops, parameters and FLOPs per layer",
               "Print the Keras-style model summary (for Keras files), then per layer its IR ops, "
               "parameter count, FLOPs (a multiply-add counts 2) and bytes moved.",
               "nncompile summary mnist_mlp.keras --batch 32")
    _model_args(sub, batch_help="batch size the FLOPs are counted at (default 1)", training=False)
    _param_args(sub)
    sub.set_defaults(run=commands.summary)


def _dump_parser(cmds) -> None:
    sub = _add(cmds, "dump", "print the IR after the pipeline, or what it compiles to",
               "Run the pipeline on the model and print the result: the IR (default), LLVM IR before "
               "or after LLVM's optimization, host assembly, the memory plan, or a picture: the graph "
               "in Graphviz DOT (fused groups as clusters, tensor types on edges), rendered to SVG "
               "when Graphviz's `dot` is installed, or the memory plan as an SVG (buffers as bars "
               "over time in the arena, the lower bound as a dashed line).\n\n"
               "--print-after* print to stderr, `// after pass ...` headers first. --dump-dir "
               "writes NNN-pass.nnir files that parse back: `nncompile dump DIR/001-dce.nnir "
               "--passes fuse,schedule` replays the rest. NNCOMPILE_DUMP_DIR (environment) dumps "
               "into DIR/<graph name>/ as nncompile.compile does.",
               "nncompile dump model.h5 --print-changed --emit ir")
    _model_args(sub, batch_help="fix the batch dimension '?' to N before the passes", training=True)
    _pass_args(sub)
    _param_args(sub)
    sub.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    sub.add_argument("--print-after", metavar="PASS[,PASS]", help="print the IR after these passes")
    sub.add_argument("--print-changed", action="store_true",
                     help="print only after passes that changed the graph")
    sub.add_argument("--dump-dir", metavar="DIR", help="write the IR after each pass to DIR/NNN-pass.nnir")
    sub.add_argument("--emit", choices=commands.EMIT_CHOICES, default="ir",
                     help="what to print (default ir; ptx: no GPU backend yet)")
    sub.add_argument("--elide-constants", action=argparse.BooleanOptionalAction, default=None,
                     help=f"print constants of more than {commands.ELIDE_ABOVE} elements as '...' "
                          f"(default: on for the terminal, off with -o, so the file parses back)")
    sub.add_argument("-o", "--output", metavar="FILE", help="write there instead of stdout")
    sub.set_defaults(run=commands.dump)


def _compile_parser(cmds) -> None:
    sub = _add(cmds, "compile", "write the compiled artefacts and a report",
               "Compile the model and write into OUT: model.nnir (the scheduled IR, replayable "
               "with params.npz), params.npz, model.ll and model.opt.ll (LLVM IR before and after "
               "LLVM's optimization), model.s (assembly), model.o (object code; model.1.o ... too when LLVM "
               "compiled the module in parts) and report.txt (kernels, fused "
               "groups, arena vs lower bound, compile time per phase and per pass), which is also "
               "printed.",
               "nncompile compile model.keras -o build/")
    _model_args(sub, batch_help="fix the batch dimension '?' to N (the report's memory plan is "
                                "at batch N, default 1)", training=True)
    _pass_args(sub)
    _param_args(sub)
    sub.add_argument("-o", "--output", metavar="OUT", required=True, help="output folder (created)")
    sub.set_defaults(run=commands.compile_)


def _run_parser(cmds) -> None:
    sub = _add(cmds, "run", "run the model on .npy inputs",
               "Compile the model and run it on the arrays in the --input files (in input order, "
               "or NAME=PATH). Outputs go to --output (.npy for one output, .npz for several) or "
               "are printed. --compare-reference also runs the reference interpreter (numpy) on "
               f"the graph before any pass and checks every output against it.\n\n{NNIR_PARAMS}",
               "nncompile run model.h5 --input x.npy --output y.npy --compare-reference")
    _model_args(sub, batch_help=None, training=False)
    sub.add_argument("--input", metavar="[NAME=]FILE.npy", action="append", required=True,
                     help="an input array; repeat for several inputs")
    sub.add_argument("--output", metavar="FILE", help="where to save the outputs (.npy or .npz)")
    sub.add_argument("--compare-reference", action="store_true",
                     help="check the outputs against the reference interpreter")
    _pass_args(sub)
    _param_args(sub)
    sub.set_defaults(run=commands.run)


def _bench_parser(cmds) -> None:
    sub = _add(cmds, "bench", "latency and throughput at several batch sizes",
               "Compile the model once and time one call per batch size on random inputs: median "
               "and best latency, and samples per second at the median.",
               "nncompile bench model.keras --batch 1,32,256")
    _model_args(sub, batch_help=f"batch sizes (default {commands.DEFAULT_BENCH_BATCHES})", training=False)
    sub.add_argument("--seconds", type=float, default=0.3, help="time spent per batch size (default 0.3)")
    _pass_args(sub)
    _param_args(sub)
    sub.set_defaults(run=commands.bench)


def _passes_parser(cmds) -> None:
    sub = _add(cmds, "passes", "list the pipelines and every pass",
               "Print each pipeline with its passes, then every registered pass with what it does.",
               "nncompile passes")
    sub.set_defaults(run=commands.passes)


def _export_parser(cmds) -> None:
    sub = _add(cmds, "export", "write the model as ONNX",
               "Write the model's inference graph as an ONNX file (checked by onnx.checker and "
               "shape inference) that ONNX Runtime and other ONNX tools run.",
               "nncompile export model.keras -o model.onnx")
    _model_args(sub, batch_help=None, training=False)
    _param_args(sub)
    sub.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    sub.add_argument("--opset", type=_positive, default=None, help="ONNX opset (default 17)")
    sub.set_defaults(run=commands.export)


def _positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _demo_parser(cmds) -> None:
    sub = _add(cmds, "demo", "train a small model and show its progress, metrics and IR",
               "Build the Pima 8-12-8-1 MLP with nncompile.keras, train it on generated Pima-like "
               "data with Keras's progress bar, evaluate it, and print the fused IR and where the "
               "IR after every pass was dumped. Needs no network.",
               "nncompile demo --epochs 10 --dump-dir dumps")
    sub.add_argument("--seed", type=int, default=0, help="random seed for data and weights")
    sub.add_argument("--epochs", type=_positive, default=20, help="training epochs (default 20)")
    sub.add_argument("--dump-dir", default=None, help="folder for the IR dumps (default: a new temporary folder)")
    sub.set_defaults(run=demo)


def _tune_parser(cmds) -> None:
    sub = _add(cmds, "tune", "measure this CPU's best GEMM blocking and keep it for later compiles",
               "Compile the f32 GEMM with a few cache blockings (KC, MC) around the ones derived "
               "from this CPU's cache sizes, time each on square products (alternating, medians), "
               "print GFLOP/s and keep the fastest in the cache directory (NNCOMPILE_CACHE_DIR), "
               "keyed by the CPU model, the package version and LLVM. Later compiles on this CPU use "
               "it unless NNCOMPILE_TUNE=0. Takes 10-40 s; compiles never tune on their own.",
               "nncompile tune --quick")
    sub.add_argument("--quick", action="store_true", help="time 512^3 and 1024^3 only (default: up to 2048^3)")
    sub.add_argument("--rounds", type=_positive, default=5, help="timed calls per candidate and shape (default 5)")
    sub.add_argument("--show", action="store_true",
                     help="print the host, the derived, tuned and used blocking; measure nothing")
    sub.set_defaults(run=tune)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the `nncompile` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="nncompile", parents=[_common(False)], formatter_class=_formatter,
        description="Trace Keras-style neural networks into a typed IR, run passes over it, compile "
                    "it to native code, and inspect every step.",
        epilog="Exit status: 0 ok, 1 model or input error, 2 usage error.\n"
               "Examples:\n  nncompile summary model.keras\n  nncompile dump model.h5 --print-changed\n"
               "  nncompile run model.h5 --input x.npy --compare-reference\n  nncompile demo")
    parser.add_argument("--version", action="version", version=f"nncompile {nncompile.__version__}")
    cmds = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_summary_parser, _dump_parser, _compile_parser, _run_parser, _bench_parser,
                _export_parser, _passes_parser, _tune_parser, _demo_parser):
        add(cmds)
    return parser


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader went away (`nncompile dump ... | head`): not an error of the model.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, OSError, EOFError) as e:
        if args.debug:
            raise
        print(f"nncompile {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
