"""Layer 1, environments: Gymnasium vector envs with the true final observation (`vector`), and a Pendulum written in
torch (`torch_pendulum`)."""
