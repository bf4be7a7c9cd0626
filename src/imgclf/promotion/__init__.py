"""Promotion: whether a candidate model replaces the champion, and the registry that says so.

- `gate`: the pure decision over metrics and paired predictions (McNemar, thresholds).
- `contest`: scores the candidate and the champion on one test split, decides with the gate,
  records the decision with the version's model card and describes it for the report.
- `model_registry`: the MLflow Model Registry's versions, aliases, tags and descriptions (the
  I/O).
"""
