"""The contact-list platforms behind one Backend protocol: v2, CXone, their HTTP transport,
token and rate limit.
"""
