"""The bench helpers: nominal FLOPs per training step, and the Markdown tables and sections."""

from __future__ import annotations

import math

import pytest

from bench.common import Section, Table, append_section
from bench.flops import step_flops
from calliper_pipeline.config import EncoderConfig


def test_nominal_flops_by_hand() -> None:
    f = step_flops(EncoderConfig(), 1024)
    fwd = 2 * (128 * 256 + 8 * 256 * 256 + 256 * 128)
    assert f.fcnet_forward == fwd
    assert f.fcnet_backward == 2 * fwd - 2 * 128 * 256  # no input gradient at the first layer
    assert f.logits == 3 * 2 * 1024 * 128  # (B, B) scores: forward + two input gradients
    assert f.projection == 2 * 2 * 384 * 128
    assert math.isclose(f.train / 1e6, 4.457, rel_tol=1e-3)  # the issue's ~4.5 MFLOP per POI
    executed = step_flops(EncoderConfig(), 1024, distinct_texts=69, nominal=False)
    assert executed.pe == 0 and executed.logits == 3 * 2 * 69 * 128
    assert executed.train < f.train


def test_bench_tables_and_sections(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = Table(("a", "b"))
    t.add(1234567, 0.5)
    t.add("x", float("nan"))
    assert t.markdown().splitlines() == [
        "| a | b |",
        "| --- | --- |",
        "| 1,234,567 | 0.50 |",
        "| x | – |",
    ]
    with pytest.raises(ValueError):
        t.add(1)
    s = Section("demo", command="python -m bench.demo", commit="abc", machine="m", load="0")
    s.table("caption", t)
    path = tmp_path / "bench.md"
    s.write(path, echo=False)
    append_section(path, "## second\n")
    text = path.read_text()
    assert text.startswith("# Benchmarks") and "python -m bench.demo" in text
    assert text.index("## demo") < text.index("## second")
