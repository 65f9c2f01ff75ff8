"""Fake model servers that speak the OpenAI and Anthropic wire protocols on loopback.

Used by tests, benchmarks and `cairn demo`: answers come from a `Script` of turns
(cairn_fakes.script); `FakeModelServer` (cairn_fakes.runner) serves them in a thread.
"""
