"""The import graph of the originprobe package, its benchmarks and its scripts: every import, also
inside functions, between their modules. Prints cycles (anywhere) and arrows from a package stage
to a later one; exits 1 when there is any. Benchmarks and scripts may import any stage, and each
other only without a circle.

Stages, in pipeline order (a module may import its own stage and earlier ones only):
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "originprobe"
# pipeline order; modules at the same rank may not import each other's packages either way
STAGES = [
    "errors",
    "fileio",
    "registry",
    "options",
    "runtime",
    "data",
    "protocols",
    "provenance",
    "backbones",
    "features",
    "heads",
    "openset",
    "metrics",
    "discovery",
    "training",
    "model",
    "report",
    "pipeline",
    "serve",
    "cli",
    "__main__",
    "__init__",
]


TOP = Path(__file__).resolve().parents[1]
LOOSE = [TOP / "benchmarks", TOP / "scripts"]  # modules imported by file name (sys.path)


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("originprobe"):
                out.add(target)
                for a in node.names:  # "from . import x" may name a module
                    out.add(f"{target}.{a.name}")
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("originprobe")}
    return out


def stage(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def loose_imports(path: Path, names: set[str]) -> set[str]:
    """The benchmark or script modules a benchmark or script imports (by file name)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module in names:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in names}
    return out


def main() -> int:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: {t for t in imports(p) if t in files and t != m} for m, p in files.items()}
    loose = {p.stem: p for d in LOOSE for p in d.glob("*.py")}
    for name, p in loose.items():
        graph[name] = {t for t in loose_imports(p, set(loose)) if t != name}
    bad = 0
    for m, targets in sorted(graph.items()):
        for t in sorted(targets):
            if m in loose:
                continue
            s, u = stage(m), stage(t)
            if (
                s in STAGES
                and u in STAGES
                and STAGES.index(u) > STAGES.index(s)
                and s != "__init__"
            ):
                print(f"later stage: {m} -> {t}")
                bad += 1
    # cycles between modules (Tarjan's strongly connected components)
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    for comp in comps:
        # a package's __init__ re-exporting its own modules is not a circle
        real = (
            [c for c in comp if not any(c2.startswith(c + ".") for c2 in comp)]
            if len(comp) > 1
            else []
        )
        if len(real) > 1:
            print("circle: " + " <-> ".join(sorted(comp)))
            bad += 1
    print(
        f"{len(files)} modules and {len(loose)} benchmarks and scripts, "
        f"{sum(map(len, graph.values()))} imports: {bad} problem(s)"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
