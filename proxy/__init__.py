"""Thruway: an LLM gateway with one OpenAI-compatible API in front of every provider."""
