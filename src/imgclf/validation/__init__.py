"""The data checks before training: the Great Expectations suite and its report.

- `suite`: the expectations over the manifest, run with GX Core.
- `report`: the result that the validate stage writes and the train stage logs.
"""
