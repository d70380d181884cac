"""No import cycles in animalid, counting imports inside functions and under TYPE_CHECKING.

grimp (installed with import-linter) reads every import statement of every
module, wherever it sits, so a cycle hidden in a function-local import shows
here too. A package's ``__init__`` importing its own submodules is not a
cycle unless a submodule imports the package back.
"""

from __future__ import annotations

import grimp
import pytest

pytestmark = pytest.mark.unit


def find_cycles(package: str = "animalid") -> list[list[str]]:
    """Every module that can reach itself through imports, with one such path."""
    graph = grimp.build_graph(package, include_external_packages=False, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            path = graph.find_shortest_chain(importer=imported, imported=module)
            if path:
                cycles.append([module, *path])
    return cycles


def test_find_cycles_sees_a_function_local_cycle(tmp_path, monkeypatch):
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from cyclic import b\n")
    (package / "b.py").write_text("from cyclic import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_cycles("cyclic")


def test_animalid_has_no_import_cycles():
    cycles = find_cycles()
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)
