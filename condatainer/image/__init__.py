"""The env.img file and nothing else: its layout, its filesystem, its locks.

Create, resize, check, pack and unpack images, change their owners, read them without
mounting (e2fsprogs), lock them the way Apptainer does, and say where things are inside them
(`layout`).  Nothing here knows about containers, shells or jobs: this package imports only
the base modules (errors, display, atomic, runner).  It re-exports nothing, so importing one
module (the lock probe on every exec) does not import the others.
"""
