"""Which exported names no notebook example exercises.

Every public function and class a module exports (its `__all__`, and the public methods it adds with `@patch`) must be
named in at least one notebook cell that is neither exported nor `#| eval: false`: such cells run under `nbdev_test`,
without a pipeline run. `python tests/exercised.py [wing]` lists the gaps; `test_package` asserts there are none."""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def example_cells(root: Path = ROOT) -> list[tuple[str, str]]:
    "(notebook, source) of every code cell that runs under nbdev_test and is not exported."
    out = []
    for nb in sorted((root/'nbs').rglob('*.ipynb')):
        if '.ipynb_checkpoints' in nb.parts: continue
        for c in json.loads(nb.read_text())['cells']:
            s = ''.join(c['source'])
            if c['cell_type'] != 'code' or re.search(r'^#\|\s*(export|eval:\s*false)', s, re.M): continue
            out.append((str(nb.relative_to(root)), s))
    return out

def exported(root: Path = ROOT) -> list[tuple[str, str]]:
    "(module file, name) of every public function or class in `__all__`, and every public `@patch` method."
    out = []
    for py in sorted((root/'mlops_nb').rglob('*.py')):
        if py.name in ('_modidx.py', '__init__.py'): continue
        tree = ast.parse(py.read_text())
        defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        names = [e.value for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, 'id', '') == '__all__' for t in n.targets)
                 for e in n.value.elts]
        names = [n for n in names if n in defs]
        names += [n.name for n in defs.values() if not isinstance(n, ast.ClassDef) and n.name not in names
                  and any('patch' in ast.unparse(d) for d in n.decorator_list)]
        out += [(str(py.relative_to(root)), n) for n in names if not n.startswith('_')]
    return out

def unexercised(root: Path = ROOT, wing: str = '') -> list[tuple[str, str]]:
    cells = '\n'.join(s for _, s in example_cells(root))
    return [(f, n) for f, n in exported(root) if f.startswith(f'mlops_nb/{wing}') and not re.search(rf'\b{re.escape(n)}\b', cells)]

if __name__ == '__main__':
    gaps = unexercised(ROOT, sys.argv[1] if len(sys.argv) > 1 else '')
    for f, n in gaps: print(f, n)
    print(len(gaps), 'exported names no notebook example names')
