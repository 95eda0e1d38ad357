"""Helpers shared by the test modules: plain modules, imported as `from tests.helpers.NAME import ...`.

pytest puts the repository root on the import path (`pythonpath` in pyproject.toml's [tool.pytest.ini_options]),
so no test module edits sys.path. Helpers live here rather than in a conftest.py: tests/ has several conftest.py
files, and `from conftest import` would depend on which one was imported last. Fixtures stay in the conftest.py
files."""
