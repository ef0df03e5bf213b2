"""The node handler: syncs the instances on one node with what their launchers really run.

``python -m runtime.handler --node NAME --sockets-dir DIR``. Modules: ``sync`` (pure: launcher
status → instance status), ``handler`` (the watch and the per-instance loop), ``main`` (CLI).

Socket sharing: each launcher pod mounts the node's hostPath ``/var/run/migrator/sockets`` and keeps
its state dir at ``<sockets>/<namespace>_<name>_<uid>/`` (``launcher.sock``, ``result.json``...);
the handler's DaemonSet pod mounts the same hostPath (``--sockets-dir``).
"""
