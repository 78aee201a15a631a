"""The package's layering, read from the source (no imports run): no import circles among tokenswarm's modules
(every import counts, a function's too, except those under ``if TYPE_CHECKING:``, which only annotate), and
Locust and gevent imported only in loadgen/."""

import ast
import os

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")
PKG = os.path.join(SRC, "tokenswarm")


def modules() -> dict[str, str]:
    """Module name -> file path, for every module of the package."""
    out = {}
    for root, _dirs, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                name = os.path.relpath(path, SRC)[:-3].replace(os.sep, ".")
                out[name.removesuffix(".__init__")] = path
    return out


def parse(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as fh:
        return ast.parse(fh.read(), path)


def imports_of(path: str, name: str) -> set[str]:
    """What the module imports, anywhere in it, except under TYPE_CHECKING."""
    tree = parse(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            else:
                visit([c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)])

    visit(tree.body)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {i for i in imports_of(p, m) if i in mods and i != m} for m, p in mods.items()}


def test_no_import_circles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                circles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                walk(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            walk(m)
    # a package importing its own submodules (its __init__) is how packages are made, not a circle
    circles = [c for c in circles if not any(a.startswith(b + ".") or b.startswith(a + ".")
                                             for a, b in zip(c, c[1:]))]
    assert circles == [], "\n".join(" -> ".join(c) for c in circles)


def test_locust_and_gevent_are_imported_only_in_loadgen():
    outside = []
    for m, p in modules().items():
        if m.startswith("tokenswarm.loadgen"):
            continue
        tree = parse(p)
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            outside += [f"{m}: {n}" for n in names if n.split(".")[0] in ("locust", "gevent")]
    assert outside == []


def test_test_files_have_unique_names():
    # pytest imports test modules by their file name: two alike in different folders collide
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names: dict[str, list[str]] = {}
    for root, _dirs, files in os.walk(tests):
        for f in files:
            if f.startswith("test_") and f.endswith(".py"):
                names.setdefault(f, []).append(os.path.relpath(os.path.join(root, f), tests))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
