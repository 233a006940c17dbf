"""The Faust worker: app, agents, live API, runtime and checkpoints."""
