"""Prequential evaluation: metrics, replays of a file, parameter tuning."""
