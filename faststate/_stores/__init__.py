"""Stores keep instances between events: the interface, memory, Redis, and the codec."""
