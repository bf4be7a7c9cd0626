"""Hyper-parameter search, one idea per module; importing the package imports no Optuna.

- `search`: the study's space, trials as `dvc exp run -S` overrides, their results.
- `runner`: runs a study's trials as DVC experiments, alone or beside other workers.
- `session`: the study's MLflow run around the trials, and its summary.
- `report`: importances, the trial table and the line that reproduces the best trial.
- `pruning`: the Optuna storage and the link a trial's train stage follows back to its study.
- `pruning_callback`: the Keras callback that reports each epoch to the trial and stops it.
"""
