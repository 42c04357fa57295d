"""The implementations the benchmark compares: ours, the seed tutorial's design, Powertools."""
