"""Naming features: notes, automatic explanations through a vision-language model, scores and exports."""
