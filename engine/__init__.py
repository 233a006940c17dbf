"""The streaming engine: Faust worker, FluRS wrapper, evaluation, producer, embedded broker."""
