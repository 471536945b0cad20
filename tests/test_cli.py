"""The `nca` entry point: how it shows warnings to a user."""

import subprocess
import sys

import numpy as np

from cli.main import format_warning
from nca_sim.rule import Architecture, Rule, save_rule, weight_shapes
from nca_train.data import SkippedFilesWarning


def test_own_warning_is_one_line():
    text = format_warning(SkippedFilesWarning("skipped 1 unreadable file(s)"), SkippedFilesWarning,
                          "/site/nca_train/data/__init__.py", 130, "return open_oxford(path)")
    assert text == "warning: skipped 1 unreadable file(s)\n"


def test_other_libraries_keep_the_standard_format():
    text = format_warning(DeprecationWarning("old"), DeprecationWarning, "/site/lib.py", 7, "call()")
    assert text == "/site/lib.py:7: DeprecationWarning: old\n  call()\n"


def test_broken_image_prints_warning_and_error(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + bytes(40))  # a JPEG header cut short
    arch = Architecture(state_channels=4, hidden_channels=8, num_layers=2)
    rule = Rule(arch, {name: np.zeros(shape, np.float32) for name, shape in weight_shapes(arch).items()})
    rule_path = save_rule(rule, tmp_path / "rule.npz")
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "simulate", "--rule", str(rule_path), "--input", str(broken), "--steps", "2",
         "-o", str(tmp_path / "run.zarr")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("warning: skipped 1 unreadable file(s)")
    assert lines[1].startswith("Error: no readable image in")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run.zarr").exists()
