"""Helpers the tests share, one module per concern.

A test module imports helpers from here and fixtures from ``tests/conftest.py``,
never from another test module.

- ``paths``: the repository, the Python running the tests, MovieLens 100k's folder
- ``messages``: event messages, the synthetic stream's, a seeded stream of known counts
- ``processors``: a StreamProcessor fed in process, and what it ranks
- ``stores``: stores written for a test, and reading a store's latest checkpoint
- ``topics``: sending to a topic (at once, or paced) and reading it back
- ``workers``: engine processes, waiting on them, their environment
- ``api``: asking the engine's live API
- ``stub_http``: small HTTP servers that stand in for the API
- ``dashboard``: a running dashboard, and the app's file
- ``readme``, ``commands``, ``rating_files``, ``command_jobs``: what the
  ``test_commands_*`` modules share: the README as a spec, commands run as a
  user runs them, MovieLens-shaped fixture files, and the slow commands
  started together
"""
