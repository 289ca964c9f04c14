"""The lake: the data contract (Parquet folders a platform exports), its validator and a generator."""
