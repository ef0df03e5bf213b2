"""The Migration controller: ``migrator.io/v1alpha1`` Migrations run as one Kubernetes Job per VM.

``plan`` (the plan document: which VMs, their disks), ``decisions`` (pure: what to start, retry,
cancel, and each VM's status), ``jobs`` (the manifests: the Job running `migrator migrate --vm` from
the project's image, its PVCs, the plan ConfigMap), ``main`` (kopf: a level-triggered reconcile).
Imports only ``core`` and ``runtime``: the Jobs' pods run the ``migrator`` command, not this process.
"""
