"""
What an operator runs the tracker with: statistics and metrics, the admin API, access lists
and private mode's passkeys.
"""
