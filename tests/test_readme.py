"""The README stays true: its configuration table names every setting, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings, env_name

README = Path(__file__).resolve().parents[1] / "README.md"


def test_configuration_table_matches_the_settings() -> None:
    """Every LLMGW_* setting of the gateway has a row, and every row is a real setting."""
    text = README.read_text()
    table = text[text.index("## Configuration") : text.index("## Architecture")]
    documented = set(re.findall(r"^\| `(LLMGW_[A-Z_]+)` \|", table, flags=re.MULTILINE))
    settings = {  # not the ones derived from others (each host's variables, read by name)
        env_name(name) for name, field in Settings.model_fields.items() if not field.exclude
    }
    assert documented == settings


def test_readme_starts_with_the_two_commands() -> None:
    """A newcomer sees `make demo` and `make test` first."""
    first_block = README.read_text().split("```")[1]
    assert first_block.split()[:4] == ["sh", "make", "demo", "#"]
    assert "make test" in first_block
