"""Everything MLflow, one idea per module; importing the package imports no Keras.

- `store`: where the store is and `open_store`, the one way every command opens it.
- `provenance`: the tags a training run carries (code, data, device, versions).
- `runs`: start, resume and end runs; retry calls to a store that may be down.
- `epoch_logger`: the Keras callback that logs each epoch in the background (the only module
  here that imports Keras at the top).
- `artifacts`: log the model, data sets and files; download a logged model.
- `team_server`: the checks and settings of the team tracking server (`imgclf server`).

The model registry's calls live with promotion (`imgclf.promotion.model_registry`).
"""
