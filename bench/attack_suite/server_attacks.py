"""placeholder"""
from __future__ import annotations
from attack_suite.core import Family
def families() -> list[Family]:
    return []
