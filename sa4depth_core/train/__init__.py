"""Training: trainer (single process or DDP under torchrun), dataset assembly and the CLI."""
