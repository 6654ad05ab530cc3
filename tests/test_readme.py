"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_python_example_runs(mirror, tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "README.md has no ```python example"
    monkeypatch.chdir(tmp_path)  # the example writes work/ into the working directory
    monkeypatch.setenv("TRANSLATOR_DATA", str(mirror))
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Zwei junge" in out and "['Two dogs play in the snow.']" in out
