"""The architecture, checked from the imports: phases depend on `core`, an earlier phase never on a later one, `core`
on no phase, only the store facade imports ml_metadata and only the validation facade imports TFDV. A failure names
the module, the line and the import."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent/'mlops_nb'
ORDER = ['core', 'scoping', 'data', 'modeling', 'serving', 'monitoring']   # the lifecycle: a wing may use the ones before it
TOOLING = {'site', 'cli'}                                                   # the docs builder and the command line use everything


def wing(module: str) -> str:
    "`mlops_nb.serving.app` -> 'serving'; `mlops_nb.cli` -> 'cli'."
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def imports(path: Path) -> list[tuple[int, str]]:
    "Every module a file imports (at the top or inside a function), resolved to its absolute name, with the line."
    mod = '.'.join(path.relative_to(PKG.parent).with_suffix('').parts)
    package = mod if path.name == '__init__.py' else mod.rsplit('.', 1)[0]
    if path.name == '__init__.py': mod = mod.rsplit('.', 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import): out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                name = '.'.join(base + ([node.module] if node.module else []))
            else: name = node.module or ''
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names if (PKG.parent/Path(*f"{name}.{a.name}".split('.'))).with_suffix('.py').exists()]
    return out


def modules():
    return sorted(p for p in PKG.rglob('*.py') if p.name != '_modidx.py')


def test_the_layout_has_one_wing_per_phase():
    wings = {p.name for p in PKG.iterdir() if p.is_dir() and not p.name.startswith(('_', '.'))}
    assert wings == {'core', 'data', 'modeling', 'serving', 'monitoring', 'site'}, wings
    assert not (set(ORDER) & TOOLING)


def test_imports_follow_the_layers():
    bad = []
    for p in modules():
        here = '.'.join(p.relative_to(PKG.parent).with_suffix('').parts)
        mine = wing(here)
        for line, name in imports(p):
            if name == 'ml_metadata' or name.startswith('ml_metadata.'):
                if here != 'mlops_nb.core.store': bad.append(f"{p.relative_to(PKG.parent)}:{line} imports {name}: only core/store talks to MLMD")
            if name.startswith('tensorflow_data_validation'):
                if here != 'mlops_nb.data.validation': bad.append(f"{p.relative_to(PKG.parent)}:{line} imports {name}: only data/validation talks to TFDV")
            if not name.startswith('mlops_nb.') or mine in TOOLING: continue
            theirs = wing(name)
            if theirs in TOOLING: bad.append(f"{p.relative_to(PKG.parent)}:{line} imports {name}: nothing at run time uses the tooling"); continue
            if mine in ORDER and theirs in ORDER and ORDER.index(theirs) > ORDER.index(mine):
                bad.append(f"{p.relative_to(PKG.parent)}:{line} imports {name}: {mine} comes before {theirs} in the lifecycle"
                           + (" (core imports no phase)" if mine == 'core' else ''))
    assert not bad, '\n'.join(bad)
