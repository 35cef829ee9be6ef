"""Hyperparameter search over recipe keys on Optuna (`zoo tune`)."""
