"""Executors run a job's replicas somewhere (local processes now; Ray later). See base.py.

Kept free of imports: importing an executor must not pull in the server."""
