"""The examples of docs/integrations/ run as written (each page's code blocks in order, in a fresh directory)."""
import re
from pathlib import Path

import pytest

PAGES = Path(__file__).resolve().parents[2] / "docs" / "integrations"
NEEDS = {"huggingface.md": "transformers", "lightning.md": "lightning", "accelerate.md": "accelerate"}


def code_of(page: Path) -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    return "\n".join(blocks)


def test_every_page_has_an_example():
    pages = sorted(p.name for p in PAGES.glob("*.md"))
    assert {"huggingface.md", "lightning.md", "accelerate.md", "amp.md", "compile.md"} <= set(pages)
    assert all(code_of(PAGES / name).strip() for name in pages)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's inductor
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.filterwarnings("ignore:.*does not have many workers")
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated")
@pytest.mark.parametrize("page", sorted(p.name for p in PAGES.glob("*.md")))
def test_page_example_runs(page, tmp_path, monkeypatch):
    if page in NEEDS:
        pytest.importorskip(NEEDS[page], reason=f"{page} needs {NEEDS[page]} (pip install gradkit[test])")
    monkeypatch.chdir(tmp_path)
    code = compile(code_of(PAGES / page), str(PAGES / page), "exec")
    if page != "accelerate.md":
        exec(code, {"__name__": "__main__"})
        return
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # one process-wide state: the page sets its own, and leaves none behind
    try:
        exec(code, {"__name__": "__main__"})
    finally:
        AcceleratorState._reset_state(True)
