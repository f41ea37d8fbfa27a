"""The optional compiled build (everything else is in pyproject.toml).

faststate is pure Python.  Built with ``FASTSTATE_COMPILE=1``, an install or a
wheel also carries the modules every event runs through compiled by mypyc, the
compiler that comes with mypy: faststate's part of an event then costs about a
fifth less.  mypyc reads the types of faststate's dependencies, so the build
runs where they are installed::

    pip install mypy==2.4.1 setuptools wheel
    FASTSTATE_COMPILE=1 pip install --no-build-isolation .

An editable install is never compiled: the sources being edited must be what runs.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup

#: The modules every event runs through that mypyc compiles and the whole test
#: suite passes with (``scripts/test-compiled``).  Left out: modules with async
#: generators (mypyc 2.4 cannot compile them), classes apps and tests subclass
#: (the stores: a compiled class cannot have interpreted subclasses) and
#: ``_transaction``, with which a database fault test failed (an event answered
#: 503 after the stall was over) and once crashed the interpreter.
COMPILED = [
    "faststate/_address.py",
    "faststate/_context.py",
    "faststate/_diff.py",
    "faststate/_errors.py",
    "faststate/_events.py",
    "faststate/_middleware.py",
    "faststate/_observe.py",
    "faststate/_protocol.py",
    "faststate/_resolve.py",
    "faststate/_scopes.py",
]


#: The setup commands that build modules: not ``editable_wheel`` (an editable
#: install) nor the metadata steps, where mypyc would only waste half a minute.
BUILDING = {"bdist_wheel", "build", "build_ext", "install"}


def compiled_modules() -> list[Any]:
    if os.environ.get("FASTSTATE_COMPILE") != "1" or not BUILDING.intersection(sys.argv):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit(
            "FASTSTATE_COMPILE=1 needs mypyc where the build runs: "
            "pip install mypy==2.4.1, then build with --no-build-isolation"
        ) from None
    return mypycify(COMPILED, group_name="faststate")


if __name__ == "__main__":  # so that scripts/test-compiled can read COMPILED
    setup(ext_modules=compiled_modules())
