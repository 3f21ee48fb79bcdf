"""Shared code of the course "Attention, from scratch": plotting, notebook tools, leak detection, test checks."""
