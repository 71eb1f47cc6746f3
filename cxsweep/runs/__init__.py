"""A run: its state in Redis (every key in keys.py), the steps, the audit record, the
webhook.
"""
