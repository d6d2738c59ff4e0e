"""Evaluation metrics of local edits (the paper's sec. 4 and what FID cannot show).

- :mod:`otresefa.metrics.fid`: FID and KID (x 1e4) through torchmetrics, on Inception-v3 features
  from a local weights file, the built-in domain's estimator features, or any feature module;
- :mod:`otresefa.metrics.locality`: share of the change outside the region, RMS change inside it,
  and the strength that matches a target change inside it;
- :mod:`otresefa.metrics.semantics`: change of the intended attribute, leakage into the others, and
  the area of parts that appear (built-in domain's estimator and segmenter).

:mod:`otresefa.benchmark` runs them all over methods, regions, signs and seeds.
"""
