"""Code that runs inside jobs: the trainer (`python -m modelyard.runtime.train`), its
hyperparameter table (hparams), data pipeline (data) and reporting (report).

Nothing here imports the server."""
