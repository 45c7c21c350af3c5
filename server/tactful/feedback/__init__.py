"""The local feedback log: the event store, outcome inference and code survival."""
