"""The cluster-wide controller: VirtualMachine → VirtualMachineInstance → launcher Pod (kopf).

One concern per module: ``names`` (labels, annotations, finalizers), ``status`` (pure decisions:
what a VM needs, its printableStatus and conditions), ``pods`` (pure: the launcher Pod of an
instance), ``kube`` (API access with fresh reads on 409), ``vm`` and ``vmi`` (the reconcilers),
``main`` (kopf registration; ``python -m runtime.controller``).
"""
