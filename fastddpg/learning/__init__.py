"""Layer 1, the parts and the math: every equation (`update`), the networks, exploration noise, the replay buffer,
and compiling the update."""
