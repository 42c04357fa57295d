"""`make bench`: the ingest pipeline against the seed tutorial's design and Powertools."""
