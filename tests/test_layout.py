"""The distribution installs derive/ and generated/ under the softce namespace only."""

import subprocess
import sys
from pathlib import Path

import softce.derive
import softce.generated

ROOT = Path(__file__).resolve().parents[1]


def test_derive_and_generated_live_under_softce() -> None:
    assert Path(softce.derive.__file__).resolve().parent == ROOT / "derive"
    assert Path(softce.generated.__file__).resolve().parent == ROOT / "generated"


def test_no_top_level_derive_or_generated(tmp_path: Path) -> None:
    code = "import importlib.util as u; print(u.find_spec('derive'), u.find_spec('generated'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["None", "None"]
