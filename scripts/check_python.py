"""Refuse, in one line, a Python the project does not support (README: Supported versions).

Runs before the venv exists, with whatever `python3` is, so it must itself
parse on old Pythons: no syntax newer than 3.0.
"""
import sys

MINIMUM = (3, 11)

if sys.version_info[:2] < MINIMUM:
    sys.exit(
        "breakglass needs Python %d.%d or newer; %s is %d.%d (set PYTHON=/path/to/python3.11 for make)"
        % (MINIMUM + (sys.executable,) + tuple(sys.version_info[:2]))
    )
