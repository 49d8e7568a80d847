"""The project's own package: event contracts, topic registry, Kafka plumbing, logging, HTTP basics."""
