"""The attack suite behind bench/attacks.py (see its docstring)."""
