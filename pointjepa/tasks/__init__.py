"""Downstream task entry points: ``python -m pointjepa.tasks.<task> fit -c <config>``."""
