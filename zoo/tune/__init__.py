"""Hyperparameter search over recipe keys on Optuna (`zoo tune`, docs/tune.md).

``space`` parses search spaces and sets a trial's values in a recipe; ``study`` runs the search (trials as
``zoo fit`` processes or inline, shared storage, resume, exact trial count); ``reporter`` is the callback inside
each trial (pruning, result); ``report`` writes best.yaml, trials.csv and the plots. Nothing here imports
``zoo.cli``: the command passes in what it needs (the recipe check, the inline ``fit``).
"""
