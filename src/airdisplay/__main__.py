"""`python -m airdisplay` runs the CLI."""

from .cli import main

main()
