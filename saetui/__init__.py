"""saetui: analyse released sparse autoencoders on CLIP vision models from the terminal."""

__version__ = "0.1.0"
