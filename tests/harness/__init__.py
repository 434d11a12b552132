"""Reusable test doubles: tiny open_clip model and SAEs, the fake hub, the independent reference forward."""
