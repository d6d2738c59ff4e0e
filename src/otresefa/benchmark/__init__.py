"""The paper's evaluation (sec. 4, Table 1) on any generator, plus what FID cannot show.

:func:`run_benchmark` runs every (method, region, sign, seed) *cell* of a benchmark and writes a
Markdown table, a CSV, a JSON summary and plots into an output folder.  The protocol
(``docs/evaluation.md`` explains it at length):

1. **Discovery.** For each region, the Gram matrices ``A_F``, ``A_B`` of the W-space Jacobians of a few
   *discovery* seeds are averaged (each seed with its own region mask on the built-in domain, whose
   faces move) and every method runs on them.  Region methods take their top direction (or the best of
   their top ``num_candidates``); the global baselines SeFa and GANSpace, which ignore the region,
   take the one of their top ``global_candidates`` with the largest first-order region ratio
   ``n^T A_F n / n^T A_B n`` -- their best shot at a local edit.
2. **Matched strength.** Each direction and sign gets its own strength ``alpha`` such that the mean
   RMS pixel change inside the region over *calibration* samples equals the region's target (images
   in [-1, 1]; :func:`otresefa.metrics.locality.matched_strength`).  All methods thus change the
   region equally and differ only in how (natural or not, local or not, the right attribute or not).
   The target is ``target_change`` or, by default on the built-in domain, the change that the
   renderer's ground-truth edit of the region's main attribute makes (:data:`REFERENCE_EDIT`).
3. **Orientation.** On a domain with an attribute estimator the direction's sign is set so that
   ``+`` increases the region's main attribute (mouth: ``mouth_open``; eyes: ``eye_size``; nose:
   ``nose_length + nose_width``): "mouth open / close" then mean the same for every method.
   Elsewhere ``+`` is the direction as the method returned it.
4. **Evaluation** on held-out *sample* seeds: FID and KID (x 1e4) of the edited images against the
   real set; the change outside the region; the change inside per unit alpha; with an estimator the
   target attribute's change and the leakage into every other attribute; for the mouth the area of
   teeth, tongue and cavity that appears.  An unedited "no edit" row gives FID's floor.
5. **Replicates.** Every cell is repeated for each seed in ``seeds`` (method seed = that seed, and
   its own sample and calibration seeds); tables give the mean and the 95% t-interval.

Cells are cached as JSON in ``OUT/cells/``; a rerun with the same settings reuses them.

SDFlow, the paper's third baseline, is not implemented in otresefa (:data:`NOT_IMPLEMENTED`).

The package's modules follow the run's seams: :mod:`~otresefa.benchmark.config` (settings, method
specs, the checked plan), :mod:`~otresefa.benchmark.samples` (the generator, its domain and the
shared inputs), :mod:`~otresefa.benchmark.run` (directions, cells, resume),
:mod:`~otresefa.benchmark.stats` (means, intervals, option comparisons) and
:mod:`~otresefa.benchmark.report` (Markdown, CSV, JSON, plots).
"""

from otresefa.benchmark.config import FULL, NOT_IMPLEMENTED, QUICK, BenchmarkConfig, MethodSpec, make_plan
from otresefa.benchmark.report import write_csv, write_markdown, write_plots, write_reports
from otresefa.benchmark.run import BenchmarkResults, run_benchmark
from otresefa.benchmark.samples import load_image_folder
from otresefa.benchmark.stats import METRICS, option_winners, summarise, t_interval

__all__ = ["BenchmarkConfig", "BenchmarkResults", "FULL", "METRICS", "MethodSpec", "NOT_IMPLEMENTED", "QUICK",
           "load_image_folder", "make_plan", "option_winners", "run_benchmark", "summarise", "t_interval",
           "write_csv", "write_markdown", "write_plots", "write_reports"]
