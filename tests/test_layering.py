"""The architecture in the tree: each package depends only on the packages below it, without cycles.

Every ``import`` statement of the project is read with ``ast`` (also those
inside functions), so a lazy import cannot hide a dependency. The allowed
dependencies are those of docs/DESIGN.md ("Packages and their dependencies").
"""
import ast
import os
import subprocess
import sys

from tests.conftest import ROOT

# package -> the project packages it may import (besides itself)
ALLOWED = {
    "util": set(),
    "data": {"util"},
    "spse": {"data", "util"},
    "models": {"util"},
    "evaluation": {"data", "util"},
    "editing": {"data", "util"},
    "trainers": {"models", "data", "evaluation", "util"},
    "options": {"models", "data", "spse", "trainers", "util"},
    "datasets": {"data", "spse", "util"},
    "editor": {"editing", "models", "spse", "data", "util"},
}
# modules that must never load torch (SPSE and its worker processes, the file formats)
TORCH_FREE = ("spse", "spse.extractor", "spse.job", "data", "data.image_io", "data.codes", "data.class_names",
              "util.errors", "util.net",
              "util.io", "util.parallel", "util.cli", "evaluation.metrics", "evaluation.report")


def _modules():
    """``{module name: path}`` of every module of the packages in :data:`ALLOWED`."""
    out = {}
    for package in ALLOWED:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].replace(os.sep, ".")
                    out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, name)
    return out


def _imports(path, modules, top_level_only=False):
    """Project modules imported by the file at ``path`` (``from a import b`` counts ``a.b`` when that is a module)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
    return {m for m in found if m.split(".")[0] in ALLOWED}


def test_each_package_imports_only_the_packages_below_it():
    modules = _modules()
    problems = []
    for name, path in sorted(modules.items()):
        package = name.split(".")[0]
        for imported in sorted(_imports(path, modules)):
            other = imported.split(".")[0]
            if other != package and other not in ALLOWED[package]:
                problems.append(f"{name} imports {imported}")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {name: {m for m in _imports(path, modules, top_level_only=True) if m in modules and m != name}
             for name, path in modules.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_every_package_imports_on_its_own_and_spse_needs_no_torch():
    """Each package imports first, with no other project module loaded; SPSE and file formats load no torch.

    One interpreter: before each package, every project module is dropped from
    ``sys.modules`` (third-party ones such as torch stay, they cannot hide a
    cycle of ours). A second one imports the torch-free modules alone.
    """
    modules = _modules()
    order = {package: sorted((m for m in modules if m.split(".")[0] == package), key=lambda m: (m != package, m))
             for package in ALLOWED}
    script = ("import importlib, sys\n"
              f"order = {order!r}\n"
              f"ours = {tuple(ALLOWED)!r}\n"
              "for package, names in order.items():\n"
              "    for loaded in [m for m in sys.modules if m.split('.')[0] in ours]:\n"
              "        del sys.modules[loaded]\n"
              "    for name in names:\n"
              "        try:\n"
              "            importlib.import_module(name)\n"
              "        except Exception as e:\n"
              "            sys.exit(f'{package}: importing {name} first failed: {type(e).__name__}: {e}')\n")
    torch_check = ("import importlib, sys\n"
                   f"for name in {TORCH_FREE!r}:\n"
                   "    importlib.import_module(name)\n"
                   "torch = sorted(m for m in sys.modules if m.split('.')[0] == 'torch')\n"
                   "assert not torch, torch[:5]\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
             for code in (torch_check, script)]
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        if proc.returncode:
            failures.append(err.strip().splitlines()[-1])
    assert not failures, "\n".join(failures)


ENTRY_SCRIPTS = ("train.py", "test.py", "save_style_vector.py", "mix_styles.py", "edit_app.py", "evaluate.py")
MAX_SCRIPT_FUNCTION_LINES = 40


def test_entry_scripts_are_thin_and_share_one_exit_convention():
    """No class and no function over 40 lines in an entry script; each runs its command through run_cli."""
    problems = []
    for script in ENTRY_SCRIPTS:
        tree = ast.parse(open(os.path.join(ROOT, script), encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                problems.append(f"{script}: class {node.name} (options and library code live in the packages)")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_SCRIPT_FUNCTION_LINES:
                    problems.append(f"{script}: {node.name} has {lines} lines")
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        if "run_cli" not in calls:
            problems.append(f"{script}: does not call util.cli.run_cli")
        handlers = [n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler) and isinstance(n.type, ast.Name)
                    and n.type.id == "USER_ERRORS"]
        if handlers:
            problems.append(f"{script}: catches USER_ERRORS itself (run_cli prints them and sets status 2)")
    assert not problems, "\n".join(problems)
