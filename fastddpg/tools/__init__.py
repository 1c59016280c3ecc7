"""Layer 4, commands built on training: verify (compiled and CUDA-graph paths against eager) and Ray Tune sweeps."""
