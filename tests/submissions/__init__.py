"""Simulated submissions, one module per assignment (the module name is the assignment id with '-' as '_').

Each module defines:
- CORRECT: answer cell -> a correct answer written differently from the reference (must earn full marks);
- WRONG: name -> (answer cell, source, [test cells that must lose points]): a realistic mistake; every other
  test cell must still earn full marks (a test of one name never fails because another name is wrong).
"""

import importlib


def for_assignment(assignment: str):
    return importlib.import_module(f"submissions.{assignment.replace('-', '_')}")
