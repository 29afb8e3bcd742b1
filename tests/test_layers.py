"""The import graph points one way (docs/layers.md): scripts and benchmarks -> n2s_app ->
models.py -> utils/ -> the network modules, with no cycle, imports inside functions included.

Read from the source with `ast`, so the test sees every edge without importing anything.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
NETWORK = {'network', 'network_configure', 'resnet_module', 'basic_ops'}
LAYERS = ['network', 'utils', 'models', 'n2s_app', 'scripts']  # lowest first


def project_modules() -> Dict[str, Path]:
    """Dotted name -> file of every project module (tests and the venv excluded)."""
    found = {}
    for path in ROOT.rglob('*.py'):
        parts = path.relative_to(ROOT).parts
        if parts[0] in ('tests', '.venv') or any(p.startswith('.') for p in parts):
            continue
        name = '.'.join(parts)[:-3]
        found[name[:-len('.__init__')] if name.endswith('.__init__') else name] = path
    return found


def layer_of(module: str) -> str:
    top = module.split('.')[0]
    if top in NETWORK:
        return 'network'
    if top in ('utils', 'models', 'n2s_app'):
        return top
    return 'scripts'  # train.py, test_single.py, ..., benchmarks.*


def imports_of(path: Path, module: str, modules: Dict[str, Path]) -> Set[str]:
    """The project modules `path` imports anywhere in it (top level or inside functions)."""
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1]
                                + ([base] if base else []))
            names = [f'{base}.{alias.name}' for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition('.')[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> Dict[str, Set[str]]:
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_imports_point_down_the_layers():
    graph = import_graph()
    upward = [f'{a} -> {b}' for a, targets in graph.items() for b in targets
              if LAYERS.index(layer_of(b)) > LAYERS.index(layer_of(a))]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_see_upward_edges_and_cycles_inside_functions(tmp_path):
    """The checks themselves: an import inside a function counts, and a cycle is found."""
    source = tmp_path / 'mod.py'
    source.write_text('def f():\n    from models import Noise2Same\n')
    assert imports_of(source, 'utils.x', {'models': source, 'utils.x': source}) == {'models'}
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert layer_of('benchmarks.speed') == 'scripts' and layer_of('utils.core.files') == 'utils'


def test_modules_stay_small():
    """models.py at most 450 lines and no class above 300; no module under utils/ above 400."""
    models = (ROOT / 'models.py').read_text()
    assert len(models.splitlines()) <= 450
    for node in ast.parse(models).body:
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno - node.lineno + 1 <= 300, node.name
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / 'utils').rglob('*.py')
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
