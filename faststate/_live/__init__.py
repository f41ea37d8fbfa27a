"""Live pages: brokers carrying committed changes, page streams, changes from outside events."""
