"""`astrobio --help`, `plugins list` and `config show` never import torch, triton, transformers
or the native module (they must stay fast). Checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "triton", "transformers", "astrobio_cli._native", "accelerate", "xarray", "httpx")

PROBE = """
import sys
from astrobio_cli.cli import main
try:
    main({args!r})
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code or 0)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["plugins", "list"],
        ["plugins", "list", "--json"],
        ["config", "show"],
        ["fetch", "--help"],
        ["bench", "--help"],
    ],
    ids=lambda a: " ".join(a),
)
def test_light_commands_import_nothing_heavy(args):
    res = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("HEAVY=")][-1]
    assert line == "HEAVY=", f"`astrobio {' '.join(args)}` imported: {line[6:]}"
