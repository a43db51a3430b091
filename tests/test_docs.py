"""The front door and the guides: README stays short with its two commands on top, every local link and picture
resolves (anchors included), and each model card lists its folder's files with their true sha256."""

import hashlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "exported").rglob("README.md"))]
CARDS = [ROOT / "exported", ROOT / "exported" / "anime-faces", ROOT / "exported" / "infogan-faces"]
LINK = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")  # Markdown links and pictures, HTML pictures


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def test_readme_is_a_short_front_door_with_the_two_set_up_commands_on_top():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    top = "\n".join(lines[:40])
    assert 'pip install -e . && python cli.py generate "red cube" "blue cylinder"' in top
    assert 'pip install -e ".[all,test]" && python -m pytest' in top


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_and_picture_resolves(page):
    broken = []
    for target in (link or img for link, img in LINK.findall(page.read_text())):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert not broken, broken


@pytest.mark.parametrize("folder", CARDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_model_card_has_its_sections_and_the_true_sha256_of_every_file(folder):
    card = (folder / "README.md").read_text()
    for section in ("## Intended use", "## Training data", "## Training command", "## Scorecard", "## Known limits",
                    "## Files"):
        assert section in card, section
    assert "real" in card.split("## Scorecard")[1].split("##")[0]  # the scorecard has its real-data row
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.name != "README.md"):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        assert f"| `{file.name}` |" in card and digest in card, file.name


def test_the_wheel_carries_the_model_cards():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cgan_export.exported"]
    assert {"README.md", "anime-faces/README.md", "infogan-faces/README.md"} <= set(data)
