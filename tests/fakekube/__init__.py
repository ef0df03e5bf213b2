"""A faithful fake Kubernetes API server over real HTTP, for tests and benchmarks of the runtime."""

from .process import FakeApiProcess
from .server import TOKEN, FakeApiServer

__all__ = ["TOKEN", "FakeApiProcess", "FakeApiServer"]
