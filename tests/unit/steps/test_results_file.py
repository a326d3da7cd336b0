"""jobs.cli.results.write_section: each key owns one section of the results file."""

from __future__ import annotations

from pathlib import Path

from jobs.cli.results import HEADER, write_section


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "results.md"
    write_section(path, "london-run", "London v1\n")
    write_section(path, "ablation-fidelity-london", "Ablation\n\nrows\n")
    first = path.read_text(encoding="utf-8")
    assert first.startswith(HEADER)
    assert first.index("London v1") < first.index("Ablation")

    write_section(path, "london-run", "London v2\n")
    text = path.read_text(encoding="utf-8")
    assert "London v1" not in text and "London v2" in text
    assert "<!-- results:ablation-fidelity-london:start -->\nAblation\n\nrows\n" in text
    assert text.count("<!-- results:london-run:start -->") == 1
    assert text.count("<!-- results:london-run:end -->") == 1
    assert text.index("London v2") < text.index("Ablation")  # kept in place
    # rewriting with the same text is a no-op
    write_section(path, "london-run", "London v2\n")
    assert path.read_text(encoding="utf-8") == text
    assert not path.with_suffix(".md.tmp").exists()


def test_write_section_keeps_text_outside_the_sections(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text("# Mine\n\nhand-written notes\n", encoding="utf-8")
    write_section(path, "a", "section A")
    write_section(path, "a", "section A again")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Mine\n\nhand-written notes\n")
    assert "section A again" in text and "section A\n" not in text
