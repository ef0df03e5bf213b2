"""Migrator: move VMware vSphere VMs onto Kubernetes."""

__version__ = "0.1.0"
