"""Entry points: `python -m web` must be able to monkey-patch before anything network-related is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_package_loads_no_network_modules() -> None:
    code = (
        "import sys, web; "
        "loaded = [m for m in ('ssl', 'socket', 'redis', 'flask', 'gevent') if m in sys.modules]; "
        "print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_bad_bind_is_a_clear_error() -> None:
    argv = [sys.executable, "-m", "web", "--bind", "nonsense"]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--bind must be HOST:PORT" in out.stderr
