"""The engine's work per message, shared by the worker and the evaluation."""
