"""Code that runs inside jobs and service replicas: the trainer (`python -m modelyard.runtime.train`),
its hyperparameter table (hparams), data pipeline (data) and reporting (report); the built-in
`transformers` serving runtime (`python -m modelyard.runtime.serve`, package serve/) and the
Unix-socket relay for runtimes that listen on TCP (`python -m modelyard.runtime.relay`).

Nothing here imports the server."""
