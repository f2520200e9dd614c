"""Reading a study back: never imports the run side.

- `handle`: `StudyHandle` (``study.load(name)``): trials, best trials, curves, importance;
- `curves`: curve analysis (best epoch, overfitting onset, gap); `replay`: the early-stopping
  replay; `audit`: the pruning audit;
- `report`: the HTML report; `status`: counts, best and running trials for ``study status``;
- `verdicts`, `intervals`: the statistics of a verdict; `verdict_report`: a comparison's
  verdict from its Optuna record; `verdict_section`: its first sections in the report.
"""
