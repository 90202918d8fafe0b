"""Modelyard: a self-hosted platform that takes an LLM through its whole life."""

__version__ = "0.1.0"
