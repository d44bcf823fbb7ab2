"""One instance or many: ownership of partitions, rebalance, the changelog topic, and
spread models (a part per partition, merged by one owner)."""
