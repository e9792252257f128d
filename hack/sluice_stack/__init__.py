"""Real Kafka, Cassandra and Kubernetes servers as local processes, for development and tests."""

from .process import Service
from .stack import GROUPS, Stack

__all__ = ["GROUPS", "Service", "Stack"]
