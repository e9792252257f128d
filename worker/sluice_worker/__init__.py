"""Sluice worker: consume from Kafka, transform, write to Cassandra, commit only after durable writes."""
