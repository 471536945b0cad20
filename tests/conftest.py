"""Shared fixtures. Tests make their own small data; photos in ../shared/data are optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep each test process to one thread: CI has 2 cores, and small tensors gain nothing from more.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NCA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Return the path of a photo set under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real photos not found at {path}")
    return path


@pytest.fixture
def horse_dir() -> Path:
    return shared_dataset("weizmann-horse")


@pytest.fixture
def pet_dir() -> Path:
    return shared_dataset("oxford-pet-mini")
