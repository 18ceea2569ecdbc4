"""What is done to the data, one package per stage, in the order the data flows:

intake -> identity -> disclosure -> release   (synthetic makes a council to run them on)

Each stage package names its public surface in `__init__.py`; the modules behind it are its
internals. `files` and `root_lock` are plumbing every stage shares.
"""
