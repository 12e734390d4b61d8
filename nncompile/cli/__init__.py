"""The `nncompile` command: summary, dump, compile, run, bench, passes, demo (`nncompile --help`)."""
from nncompile.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
