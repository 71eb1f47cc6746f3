"""The phone policy: parsing numbers to verdicts, per-list policy, line-type look-up,
disposable lists.
"""
