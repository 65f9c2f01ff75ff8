"""Local permission policy: which tool calls run, which ask, which are refused.

Owns the decision for a prepared call and the allowances granted for a session.
"""
