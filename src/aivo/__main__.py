from aivo.cli import _entry

_entry()
