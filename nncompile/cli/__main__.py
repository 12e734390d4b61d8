"""`python -m nncompile.cli`: the `nncompile` command."""
import sys

from nncompile.cli.main import main

sys.exit(main())
