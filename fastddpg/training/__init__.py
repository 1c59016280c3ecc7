"""Layer 2, the training loop: the trainer (no file I/O), its device log, probes and failsafes."""
