"""Scaling out: worker processes on one machine, and one chat room across processes and machines.

``--workers N`` runs N processes on the same listeners, one parent supervising:
``listeners.py`` binds every listener in the parent, ``supervisor.py`` spawns, restarts and
stops the workers, ``worker.py`` is the worker's side (adopting the sockets it inherited).
``--redis URL`` shares the chat room: ``redis.py`` keeps the connections to Redis,
``room.py`` is the room whose nicks, messages and WHO span every node.
"""
