import os

import pytest

from dl_jax.readme_blocks import markers, replace_block
from experiments import readme


def test_block_is_replaced_whole_and_the_rest_kept(tmp_path):
  path = tmp_path / "README.md"
  begin, end = markers("table")
  path.write_text(f"intro\n{begin}\nold\nlines\n{end}\noutro {begin[:4]}\n")
  replace_block(str(path), "table", "| new |\n")
  assert path.read_text() == f"intro\n{begin}\n| new |\n{end}\noutro {begin[:4]}\n"
  assert os.listdir(tmp_path) == ["README.md"]  # the temporary file was renamed over


def test_missing_block_is_an_error_and_the_readme_is_untouched(tmp_path):
  path = tmp_path / "README.md"
  path.write_text(f"{markers('table')[1]} end before begin {markers('table')[0]}\n")
  before = path.read_text()
  with pytest.raises(ValueError, match="no '<!-- table:begin -->'"):
    replace_block(str(path), "table", "x")
  assert path.read_text() == before


def test_readme_command_writes_blocks_whose_results_exist(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  os.makedirs("runs/benchmark")
  with open("runs/benchmark/results.md", "w") as f:
    f.write("| case | steps/s |\n|---|---|\n| a | 1.0 |\n")
  begin, end = markers("benchmark")
  mbegin, mend = markers("mnist1d-table")
  with open("README.md", "w") as f:
    f.write(f"{begin}\n{end}\n{mbegin}\nkept\n{mend}\n")
  assert readme.update("README.md", ["benchmark", "mnist1d-table"]) == ["benchmark"]
  text = open("README.md").read()
  assert "| a | 1.0 |" in text and "--blocks=benchmark" in text and "\nkept\n" in text
  assert "runs/mnist1d_table/results.md not found" in capsys.readouterr().err


def test_pages_show_each_experiments_claims_config_and_tables(smoke_tour, tmp_path):
  results, workdir = smoke_tour
  pages = readme.write_pages(workdir, str(tmp_path))
  assert sorted(os.path.basename(p) for p in pages) == sorted(f"{n}.md" for n in results["stages"])
  text = (tmp_path / "regularization.md").read_text()
  for claim in results["claims"]:
    if claim["experiment"] == "regularization":
      assert claim["claim"] in text and claim["evidence"] in text
  assert '"strategies": [' in text and "## Its tables" in text
  assert "from a `smoke` tour" in text
