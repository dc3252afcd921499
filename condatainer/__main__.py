"""`python -m condatainer` runs the command line."""

from condatainer.cli import entry

entry()
