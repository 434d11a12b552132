"""What a feature does: exact interventions from the hook through the rest of CLIP to the class logits."""
