"""Grading a class: sandboxed, parallel, resumable (see README.md in this folder)."""
