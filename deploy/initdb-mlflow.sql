-- docker-compose.yml: the postgres image creates the `dagster` database; MLflow's is this one.
CREATE DATABASE mlflow;
