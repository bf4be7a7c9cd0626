"""Training core, by idea: plan (derived sizes), runtime (backend, seeds, device), inputs,
classifier (the model from params), fit, checkpoint (resume) and session (the whole sequence).

Importing the package imports nothing heavy: runtime must pick the Keras backend first.
"""
