"""The live service's worker side: settings, Redis store, queue, jobs, Label Studio access.

Depends on :mod:`ls_panoptic` (the pure core), never on :mod:`backend`. Importing a module here
has no side effects: nothing connects or reads the environment until asked
(:meth:`worker.settings.Settings.from_env` is the only reader of the environment).
"""
