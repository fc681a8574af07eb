"""`python -m swarmkeep` runs the CLI."""

from swarmkeep.cli.main import app

app()
