"""What pyproject.toml promises a user who installs lamina with extras."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_no_extra_is_empty() -> None:
    extras = PROJECT["optional-dependencies"]
    assert [name for name, needs in extras.items() if not needs] == []


def test_dev_installs_every_user_facing_extra() -> None:
    extras = PROJECT["optional-dependencies"]
    dev = " ".join(extras["dev"])
    for name in extras:
        if name not in ("dev", "http2"):
            assert name in dev, f"the dev extra does not install lamina[{name}]"
