"""`convert` orchestration: plan → disk jobs → manifests → target (output directory or cluster)."""

from __future__ import annotations

from migrator.convert.run import ConvertRequest, ConvertResult, convert

__all__ = ["ConvertRequest", "ConvertResult", "convert"]
