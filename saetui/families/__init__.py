"""SAE families: how each release stores its weights and encodes, all behind one sparse encoder."""
