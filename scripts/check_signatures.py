"""Parameter counts of every function in the package: none takes more than 8 parameters (self
and cls not counted); an estimator's `__init__` (its hyper-parameters, as scikit-learn lists
them) may take up to 14. Prints each one over its limit; exits 1 when there is any."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "originprobe"
LIMIT, ESTIMATOR_INIT = 8, 14


def parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    return len([n for n in names if n not in ("self", "cls")]) + (a.vararg is not None)


def main() -> int:
    bad = 0
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = ESTIMATOR_INIT if node.name == "__init__" else LIMIT
                n = parameters(node)
                if n > limit:
                    print(
                        f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name}: {n} > {limit}"
                    )
                    bad += 1
    print(f"signatures: {bad} over the limit")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
