"""Using a trained model: predictions on image files and folders, and the MLflow pyfunc model.

- `prediction`: `imgclf predict` on files, folders and archives.
- `pyfunc_model`: the MLflow "models from code" file; it imports nothing from imgclf.
"""
