"""Where Jupyter, IPython and matplotlib keep their state, so that nothing is written under $HOME.

Set by the Makefile (`_build/home`), the tests and benchmarks (their scratch homes) and the grading sandbox
(`/tmp` inside it). Importing this module costs nothing (the grader's command line and sandbox import it).
"""

from __future__ import annotations

from pathlib import Path

PRIVATE_HOME = {
    "JUPYTER_CONFIG_DIR": "jupyter-config",
    "JUPYTER_DATA_DIR": "jupyter-data",
    "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
    "IPYTHONDIR": "ipython",
    "MPLCONFIGDIR": "matplotlib",
}


def private_home(home: str | Path) -> dict[str, str]:
    """The environment variables that keep Jupyter, IPython and matplotlib state under `home`, not $HOME."""
    return {var: f"{home}/{sub}" for var, sub in PRIVATE_HOME.items()}
