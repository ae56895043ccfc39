"""The README's code runs as written, and its commands are the ones the project uses."""
import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "backward()" in b]
    assert blocks, "README has no python example of the API"
    script = tmp_path / "readme_example.py"
    script.write_text(blocks[0])
    monkeypatch.chdir(tmp_path)  # the example writes a checkpoint
    ns = runpy.run_path(str(script))
    assert ns["x"].grad is not None and ns["w"].grad.shape == (2, 3)
    assert (tmp_path / "ckpt.safetensors").exists()


def test_ci_runs_the_readme_test_command():
    text = README.read_text()
    marker = text.index("<!-- test-command -->")
    command = re.search(r"```bash\n(python.*)\n```", text[marker:]).group(1)
    assert "pytest" in command and "pip install -e '.[test]'" in command
    ci = (README.parent / ".ci" / "run").read_text()
    assert "test-command" in ci  # .ci/run reads the command from README rather than repeating it


def test_readme_tokenizer_example_runs(tmp_path, monkeypatch):
    """The byte-pair encoding example, after the README's own command has trained runs/bpe-2000."""
    from models.__main__ import main
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "load_bpe" in b)
    command = re.search(r"python -m models (tokenizer train [^#\n]*?)\s*(#|\n)", README.read_text()).group(1)
    monkeypatch.chdir(tmp_path)
    assert main(command.split()) == 0
    script = tmp_path / "tokenizer_example.py"
    script.write_text(block)
    ns = runpy.run_path(str(script))
    assert ns["tok"].decode(ns["ids"]) == "ROMEO: But, soft!" and len(ns["ids"]) < len("ROMEO: But, soft!")
