"""The small shared core that every top-level package may import.

`migrator/` (the CLI and orchestration), `converters/` (disks, specs, guest) and `runtime/`
(controller, handler, launcher) import each other in one direction only (migrator → converters,
migrator → runtime); all three may import `core`, which imports nothing of theirs: the errors a user
sees (with their exit codes), the inventory and plan data models, cache paths, quantities, the poll
helper, and the rules for untrusted input and private output. `make lint` checks the directions
(import-linter; docs/architecture.md).
"""
