"""The k8s suite's fixtures: those of tests/integration/conftest.py (work
directories, the reaper, built programs, local clusters, control_plane),
with every cluster against the real API server (PGLEASE_KUBE=real)."""

import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or \
    os.path.dirname(os.path.dirname(HERE))
for _path in (HERE, os.path.join(SOURCE_DIR, "tests", "integration"),
              os.path.join(SOURCE_DIR, "tests", "kube-emulator"),
              os.path.join(SOURCE_DIR, "tests", "resilience")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

os.environ["PGLEASE_KUBE"] = "real"

_spec = importlib.util.spec_from_file_location(
    "integration_conftest",
    os.path.join(SOURCE_DIR, "tests", "integration", "conftest.py"))
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)
globals().update({name: value for name, value in vars(_integration).items()
                  if not name.startswith("__")})
