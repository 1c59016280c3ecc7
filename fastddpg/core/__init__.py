"""Layer 0, configuration and names: the Config dataclass, the run files' schema, file writes, threads, config files.

Imports nothing else of fastddpg and no torch."""
