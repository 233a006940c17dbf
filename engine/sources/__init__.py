"""Where events come from: the contract, encodings, MovieLens, the synthetic stream, producers, Kafka."""
