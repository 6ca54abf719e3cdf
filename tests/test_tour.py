"""The tour: verdicts follow the numbers, and the smoke tour writes a complete, valid report."""

import base64
import json
import os
import re
import shutil
import subprocess

import html5lib
import pytest

from dl_jax.lab.records import Record, Records
from dl_jax.lab.verdicts import REFUTED
from dl_jax.report import markdown_table, markdown_to_html
from experiments import tour
from experiments.tour_claims import (CLAIMS, NOT_MEASURED, NOT_RUN, NOT_SUPPORTED, SUPPORTED,
                                     judge_claims)


def _seeds(experiment, arm, values, dataset="mnist1d", split="test", metric="accuracy"):
  return [Record(experiment, "test", dataset, arm, seed, split, metric, v)
          for seed, v in enumerate(values)]


def _one(experiment, arm, value, metric, dataset="mnist1d", split="-"):
  return Record(experiment, "test", dataset, arm, None, split, metric, value)


def _claim(records: list, experiment: str, claim_start: str = ""):
  return next(c for c in judge_claims(Records(records), {experiment})
              if c.experiment == experiment and c.claim.startswith(claim_start))


def _table(cnn, mlp):
  return (_seeds("mnist1d_table", "cnn_mnist1d", cnn) + _seeds("mnist1d_table", "mlp", mlp)
          + [_one("mnist1d_table", "cnn_mnist1d", 5210, "num_params"),
             _one("mnist1d_table", "mlp", 15210, "num_params")])


def test_architecture_verdict_follows_the_paired_test():
  better = _table([0.93, 0.94, 0.92, 0.95, 0.93], [0.66, 0.65, 0.67, 0.64, 0.66])
  assert _claim(better, "mnist1d_table", "CNNs").verdict == SUPPORTED
  worse = _table([0.66, 0.65, 0.67, 0.64, 0.66], [0.93, 0.94, 0.92, 0.95, 0.93])
  assert _claim(worse, "mnist1d_table", "CNNs").verdict == REFUTED
  # a higher mean whose per-seed differences disagree in sign is not enough
  noisy = _table([0.95, 0.60, 0.97, 0.58], [0.66, 0.65, 0.67, 0.64])
  claim = _claim(noisy, "mnist1d_table", "CNNs")
  assert claim.verdict == NOT_SUPPORTED and "paired t, n = 4" in claim.evidence
  assert judge_claims(Records(better), set())[3].verdict == NOT_RUN
  # the GRU row needs a model that did not run: said, not crashed
  assert _claim(better, "mnist1d_table", "RNNs").verdict == NOT_MEASURED


def _adversarial(pgd, normal, checks_ok=True):
  metric = "accuracy under PGD-40 x 2 at eps 0.3"
  weaker = "accuracy under PGD-10 x 1 at eps 0.3"
  return (_seeds("adversarial", "pgd", pgd, "mnist", metric=metric)
          + _seeds("adversarial", "normal", normal, "mnist", metric=metric)
          + _seeds("adversarial", "pgd", [0.0] * len(pgd), "mnist", metric=weaker)
          + _seeds("adversarial", "normal", [0.9] * len(pgd), "mnist", metric=weaker)
          + [_one("adversarial", "gradient-masking check", checks_ok, "more_steps"),
             _one("adversarial", "gradient-masking check", True, "below_clean")])


def test_robustness_verdict_needs_the_margin_under_the_strongest_attack_and_every_check():
  strong = [0.80, 0.78, 0.82, 0.79, 0.81]
  claim = _claim(_adversarial(strong, [0.0] * 5), "adversarial")
  assert claim.verdict == SUPPORTED and "PGD-40 x 2 starts at eps 0.3" in claim.measured
  # 20 points better is significantly less than the 30-point margin the claim states
  assert _claim(_adversarial([0.2, 0.21, 0.19, 0.2, 0.2], [0.0] * 5),
                "adversarial").verdict == REFUTED
  masked = _claim(_adversarial(strong, [0.0] * 5, checks_ok=False), "adversarial")
  assert masked.verdict == NOT_SUPPORTED and "fail: more_steps" in masked.measured


def _gan(ratios, rarest):
  return (_seeds("gan", "generator", ratios, "mnist", metric="ratio_to_floor")
          + _seeds("gan", "generator", rarest, "mnist", metric="min_class_fraction")
          + _seeds("gan", "generator", [10.0] * len(ratios), "mnist", metric="classes_generated")
          + [_one("gan", "target", 5.0, "distance_ratio_target", "mnist"),
             _one("gan", "target", 0.05, "min_class_fraction", "mnist")])


def test_gan_verdict_holds_only_when_every_seed_meets_both_targets():
  assert _claim(_gan([3.0, 4.9], [0.07, 0.06]), "gan").verdict == SUPPORTED
  assert _claim(_gan([3.0, 5.1], [0.07, 0.06]), "gan").verdict == NOT_SUPPORTED
  assert _claim(_gan([3.0, 4.0], [0.07, 0.04]), "gan").verdict == NOT_SUPPORTED


def _regularization(none_train, none_test, drop_train, drop_test):
  return [r for arm, train, test in (("none", none_train, none_test),
                                     ("dropout=0.5", drop_train, drop_test))
          for r in _seeds("regularization", arm, train, "mnist:500", "train")
          + _seeds("regularization", arm, test, "mnist:500", "test")]


def test_dropout_verdict_is_on_the_paired_gap_and_refuses_a_significant_test_loss():
  ones = [1.0] * 5
  shrinks = _regularization(ones, [0.87, 0.86, 0.88, 0.87, 0.86], ones,
                            [0.885, 0.88, 0.89, 0.885, 0.875])
  assert _claim(shrinks, "regularization", "Dropout").verdict == SUPPORTED
  # the gap shrinks because training accuracy falls, and test accuracy falls too
  worse = _regularization(ones, [0.87, 0.86, 0.88, 0.87, 0.86], [0.9, 0.89, 0.91, 0.9, 0.9],
                          [0.85, 0.845, 0.86, 0.85, 0.84])
  claim = _claim(worse, "regularization", "Dropout")
  assert claim.verdict == NOT_SUPPORTED and "test accuracy does not fall" in claim.evidence


def test_markdown_table_escapes_pipes_and_html_inlines_images(tmp_path):
  assert markdown_table(["a", "b"], [["x|y", 1]]).splitlines()[2] == "| x\\|y | 1 |"
  png = _write_png(tmp_path / "plots" / "p.png")
  html = markdown_to_html("# T\n\n![plot](plots/p.png)\n", "T", str(tmp_path))
  assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in html
  with pytest.raises(FileNotFoundError, match="missing.png"):
    markdown_to_html("![x](plots/missing.png)", "T", str(tmp_path))


def _write_png(path) -> bytes:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  os.makedirs(path.parent, exist_ok=True)
  plt.figure(figsize=(1, 1))
  plt.savefig(path)
  plt.close()
  return path.read_bytes()


def test_unknown_experiment_is_refused_before_anything_runs(tmp_path):
  with pytest.raises(ValueError, match="--only=mnist2d: 'mnist2d' must be one of"):
    tour.run(tour.TourConfig(only=("mnist2d",)), str(tmp_path), "smoke")
  assert not os.listdir(tmp_path)


def test_readme_block_is_replaced_between_its_markers(tmp_path):
  results = {"claims": [{"claim": "c", "experiment": "e", "measured": "m", "evidence": "t",
                         "anchor": "a", "verdict": SUPPORTED, "rule": "r"}],
             "budget": "smoke", "wall_seconds": 60.0,
             "environment": {"machine": {"cpu_count": 2, "cpu": "Some CPU @ 1GHz"}}}
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{tour.README_BEGIN}\nold table\n{tour.README_END}\noutro\n")
  tour.update_readme(str(readme), results)
  text = readme.read_text()
  assert "old table" not in text and "| c | e | m | t | a | **supported** | r |" in text
  assert "2 cores of Some CPU @ 1GHz; regenerated by" in text
  assert text.startswith("intro\n") and text.endswith(f"{tour.README_END}\noutro\n")
  readme.write_text("no markers here\n")
  with pytest.raises(ValueError, match="no '<!-- tour-claims:begin -->'"):
    tour.update_readme(str(readme), results)


# ---- the smoke tour, end to end --------------------------------------------------------------

def test_smoke_tour_runs_every_experiment_and_judges_every_claim(smoke_tour):
  results, workdir = smoke_tour
  assert sorted(results["stages"]) == sorted(tour.STAGES)
  for name, stage in results["stages"].items():
    assert stage["error"] is None, (name, stage["error"])
    assert stage["wall_seconds"] > 0 and stage["config"]
  assert {c["verdict"] for c in results["claims"]} <= {SUPPORTED, NOT_SUPPORTED, REFUTED}
  records = open(os.path.join(workdir, "records.jsonl")).read().splitlines()
  assert {json.loads(line)["experiment"] for line in records} == set(tour.STAGES)
  assert {row[0] for row in results["generalization"]} == set(tour.STAGES)
  saved = json.load(open(os.path.join(workdir, "results.json")))
  assert saved["environment"]["packages"]["jax"] and saved["environment"]["devices"]
  assert saved["stages"]["siamese"]["config"]["seeds"] == [0, 1]
  assert [c["verdict"] for c in saved["claims"]] == [c["verdict"] for c in results["claims"]]


def test_smoke_report_has_every_section_and_every_plot(smoke_tour):
  results, workdir = smoke_tour
  report = open(os.path.join(workdir, "report.md")).read()
  headings = re.findall(r"^## (.+)$", report, flags=re.M)
  assert headings == ["Claims", "Generalization", *tour.STAGES]
  for claim in results["claims"]:
    assert claim["claim"] in report
  plots = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
  assert len(plots) >= len(tour.STAGES) - 1  # translate draws none
  assert all(os.path.isfile(os.path.join(workdir, p)) for p in plots)


def test_smoke_report_html_is_valid_and_self_contained(smoke_tour):
  _, workdir = smoke_tour
  html = open(os.path.join(workdir, "report.html")).read()
  html5lib.HTMLParser(strict=True).parse(html)  # raises on any HTML5 parse error
  sources = re.findall(r'<img src="([^"]+)"', html)
  report = open(os.path.join(workdir, "report.md")).read()
  assert len(sources) == len(re.findall(r"!\[", report)) > 0
  for src in sources:
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (CI "
                    "installs it from Debian's packages)")
def test_smoke_report_opens_in_a_headless_browser_with_every_image_decoded(smoke_tour, tmp_path):
  _, workdir = smoke_tour
  html = open(os.path.join(workdir, "report.html")).read()
  probe = ("<script>window.addEventListener('load', () => {"
           "document.body.dataset.images = document.images.length;"
           "document.body.dataset.broken = [...document.images].filter("
           "i => !i.complete || i.naturalWidth === 0).length; });</script>")
  page = tmp_path / "probe.html"
  page.write_text(html.replace("</body>", probe + "</body>"))
  shown = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
  assert shown.returncode == 0, shown.stderr[-2000:]
  body = re.search(r'<body data-images="(\d+)" data-broken="(\d+)"', shown.stdout)
  assert body, shown.stdout[:500]
  assert int(body[1]) == html.count("<img ") and int(body[2]) == 0
  assert "Uncaught" not in shown.stderr


def test_report_only_rejudges_the_saved_results_identically(smoke_tour, tmp_path):
  results, workdir = smoke_tour
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  saved = json.load(open(copy / "results.json"))
  rejudged = tour.write_report(saved, str(copy))
  assert rejudged["claims"] == json.loads(json.dumps(results["claims"]))
  assert (copy / "report.md").read_text() == open(os.path.join(workdir, "report.md")).read()


def test_readme_main_job_is_the_tour_and_shows_a_generated_claims_table():
  readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md")).read()
  quick_start = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
  assert quick_start.strip().splitlines()[0].startswith(
      "pip install -e . && python -m experiments.tour ")
  block = readme.split(tour.README_BEGIN, 1)[1].split(tour.README_END, 1)[0]
  assert "regenerated by `python -m experiments.tour --report_only --readme=README.md`" in block
  for spec in CLAIMS:
    assert f"| {spec.claim} | {spec.experiment} |" in block


@pytest.mark.parametrize("content", [
    "", '{"stages": {"gan": ', "[]", '{"budget": "smoke"}', '{"stages": {"gan": {}}}',
    '{"stages": {"mnist2d": {}}}',
    '{"stages": {"gan": {"config": {}, "results": {"x": 1}, "error": null, "wall_seconds": 1,'
    ' "cpu_seconds": 1}}, "environment": {}}',
])
def test_report_only_refuses_a_results_file_it_cannot_read_and_leaves_it_alone(tmp_path, content):
  (tmp_path / "results.json").write_text(content)
  with pytest.raises(tour.ResultsFileError, match="results.json (cannot be read back|is not shaped)"):
    tour.rerender(str(tmp_path))
  assert (tmp_path / "results.json").read_text() == content
  assert sorted(os.listdir(tmp_path)) == ["results.json"]


def test_report_only_without_results_says_to_run_the_tour_first(tmp_path):
  with pytest.raises(tour.ResultsFileError, match="run the tour into --workdir first"):
    tour.rerender(str(tmp_path))
