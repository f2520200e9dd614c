"""Where a study is kept: Optuna storage (the source of truth) and the MLflow tracking store
(the browsable record of every curve).

- `uris`: storage URLs and tracking URIs: where they come from, their checks, password masking;
- `optuna_storage`: opening Optuna storage (the one module that touches Optuna internals);
- `tracker`: the `Tracker` Protocol and `MlflowTracker`, the in-process MLflow writer;
- `writer`: `TrackerProcess`, the same interface written by the driver's own writer process;
- `journal`: the Optuna journal file (flock appends, one read position, snapshots);
- `mlflow_sql`: MLflow's writes and the runs' reads as SQL on a database tracking store;
- `mlflow_rest`: the runs' reads from an MLflow server's REST API, without importing MLflow;
- `runs`: reading a study's MLflow runs back (the query side).

Only this package imports MLflow.
"""
