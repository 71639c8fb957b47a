"""The archive sink: every span as Parquet (zstd) in a Hive-partitioned cold tier."""
