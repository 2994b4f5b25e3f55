"""Scaling out: ``--workers N`` runs N processes on the same listeners, one parent supervising.

``listeners.py`` binds every listener in the parent, ``supervisor.py`` spawns, restarts and
stops the workers, ``worker.py`` is the worker's side (adopting the sockets it inherited).
"""
