"""Vision models: the trunk run up to a hook point, and each model's reference preprocessing."""
