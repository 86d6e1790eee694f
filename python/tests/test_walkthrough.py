"""docs/python.md runs as written: its Python blocks, in order, in one interpreter, from
a folder laid out like the repository (data/kuairand-pure)."""

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_docs_python_walkthrough_runs_as_written(tmp_path):
    doc = (REPO / "docs" / "python.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) >= 7, "the walk-through's code blocks were not found"
    (tmp_path / "data").mkdir()
    os.symlink(REPO / "data" / "kuairand-pure", tmp_path / "data" / "kuairand-pure")
    script = tmp_path / "walkthrough.py"
    script.write_text("\n".join(blocks))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, f"the walk-through failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    out = tmp_path / "walkthrough"
    for f in ["models/mfh/model.json", "cmp/table.md", "click_auc.png", "mfh.safetensors", "mfh.onnx"]:
        assert (out / f).is_file(), f
    # The ONNX comparison's printed difference (the last line) is small.
    last = r.stdout.strip().splitlines()[-1]
    assert float(last) <= 1e-5, last
