"""`python -m condatainer` runs the command line."""

from condatainer.entry import entry

entry()
