"""``python -m migrator``: the command line (what a Migration's Job runs in the project's image)."""

from migrator.cli import main

main()
