"""The package's layers import one way only: no import cycle (imports inside functions included), every module in
a layer, every import from the same layer or one below, and the plotting and evaluation modules usable without
the training stack."""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

import fastddpg

PACKAGE = Path(fastddpg.__file__).resolve().parent

# The layers are folders: a module's layer is its folder's (README's Layout table says the same). A new module in
# one of these folders, an algorithm file included, needs no line here.
FOLDER_LAYERS = {
    0: {"core"},                        # configuration and names: Config, the run files' schema, the registry; no torch
    1: {"learning", "algos", "envs"},   # the parts and the math: equations, networks, replay, algorithms, envs
    2: {"training"},                    # the training loop (no file I/O), its device log, probes, failsafes
    3: {"runs"},                        # files: run directory, checkpoints and resume, evaluation, export, video
    4: {"reports", "tools", "api"},     # what a user reads and runs: console, plots, verify, sweeps, train()
    5: {"cli"},                         # the command line, one module per command
}
LAYER_OF_FOLDER = {f: n for n, folders in FOLDER_LAYERS.items() for f in folders}


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if parts:  # the package's own __init__ imports lazily, by name
            names.append(".".join(parts))
    return names


@functools.cache
def all_modules() -> frozenset[str]:
    return frozenset(module_names())


def layer_of(module: str) -> int:
    return LAYER_OF_FOLDER[module.split(".")[0]]


def imports_of(module: str) -> set[str]:
    """Package modules that ``module`` imports anywhere in its file (top level, functions, TYPE_CHECKING)."""
    path = PACKAGE.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                # `from .. import x` or `from ..tools import sweeps`: x or tools.sweeps may be a module
                candidates = [target] + [f"{target}.{a.name}".lstrip(".") for a in node.names]
            elif node.module and node.module.startswith("fastddpg"):
                target = node.module.removeprefix("fastddpg").lstrip(".")
                candidates = [target] + [f"{target}.{a.name}" if target else a.name for a in node.names]
            else:
                continue
            found |= {c for c in candidates if c in all_modules()}
        elif isinstance(node, ast.Import):
            for a in node.names:
                name = a.name.removeprefix("fastddpg").lstrip(".")
                if a.name.startswith("fastddpg.") and name in all_modules():
                    found.add(name)
    found.discard(module)
    return found


def test_every_module_is_in_a_layer_folder():
    homeless = [m for m in module_names() if m.split(".")[0] not in LAYER_OF_FOLDER]
    assert homeless == [], f"modules outside the layer folders (add the folder to FOLDER_LAYERS): {homeless}"
    assert {m.split(".")[0] for m in module_names()} == set(LAYER_OF_FOLDER), "a layer folder has no module"


def test_the_layer_check_sees_an_upward_import(tmp_path, monkeypatch):
    """A module of core importing training is caught: the check can fail."""
    fake = tmp_path / "fastddpg"
    (fake / "core").mkdir(parents=True)
    (fake / "training").mkdir()
    (fake / "core" / "__init__.py").write_text("")
    (fake / "training" / "__init__.py").write_text("")
    (fake / "training" / "trainer.py").write_text("")
    (fake / "core" / "config.py").write_text("def f():\n    from ..training import trainer\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    all_modules.cache_clear()
    try:
        assert imports_of("core.config") == {"training", "training.trainer"}
        assert layer_of("training.trainer") > layer_of("core.config")
    finally:
        all_modules.cache_clear()


def test_imports_go_down_or_sideways_only():
    upward = [(m, i) for m in module_names() for i in imports_of(m) if layer_of(i) > layer_of(m)]
    assert upward == [], "modules importing from a higher layer: " + ", ".join(f"{m} -> {i}" for m, i in upward)


def test_no_import_cycle():
    modules = module_names()
    graph = {m: imports_of(m) - {p for p in modules if m.startswith(p + ".")} for m in modules}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*path[path.index(n):], n]
            if n not in state and (cycle := visit(n)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_imports_inside_functions():
    assert "reports.plots" in imports_of("api") and "reports.reporting" in imports_of("cli.run")  # inside cmd_run
    assert "tools.sweeps" in imports_of("cli.sweep")  # `from .. import sweeps`, inside its command


def test_plotting_and_evaluation_do_not_load_the_trainer():
    code = ("import sys, fastddpg.reports.plots, fastddpg.runs.evaluate, fastddpg.runs.rundir\n"
            "print(sorted(m for m in sys.modules if m in ('fastddpg.training.trainer', 'fastddpg.runs.checkpoint', "
            "'fastddpg.api')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"



def test_a_run_imports_pandas_and_plotly_only_at_its_end(tmp_path):
    """pandas (with pyarrow) and plotly load at the first use (fastddpg.core.lazy), which for a run with a run
    directory is its end: the imports, the env steps and every report before it go without them."""
    code = ("import sys\n"
            "from fastddpg import Config, train\n"
            "heavy = ('pandas', 'pyarrow', 'plotly')\n"
            "seen = []\n"
            "cb = lambda trainer, report: seen.append(sorted(m for m in heavy if m in sys.modules))\n"
            f"train(Config(total_steps=400, update_after=100, start_steps=100, batch_size=32, log_every=100, "
            f"run_dir={str(tmp_path / 'run')!r}), callbacks=[cb])\n"
            "print(seen, sorted(m for m in heavy if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[[], [], [], []] ['pandas', 'plotly', 'pyarrow']", p.stdout
    assert (tmp_path / "run" / "report.html").is_file()


def test_a_lazy_module_copies_and_pickles_as_its_name_and_a_missing_one_is_said_at_the_start(monkeypatch):
    import copy
    import pickle

    import fastddpg.api as api
    import fastddpg.runs.rundir as rundir
    from fastddpg import Config
    from fastddpg.core.config import ConfigError
    from fastddpg.core.lazy import LazyModule, not_installed

    lazy = LazyModule("json")
    for twin in (copy.copy(lazy), copy.deepcopy(lazy), pickle.loads(pickle.dumps(lazy))):
        assert twin.dumps([1]) == "[1]"
    assert not_installed("json", "no_such_module_here") == ["no_such_module_here"]
    monkeypatch.setattr(rundir, "not_installed", lambda *names: ["plotly"])
    with pytest.raises(ConfigError, match=r"plotly not installed: .* pip install plotly"):
        api.open_run(Config(total_steps=10))

HELP_COMMANDS = (["--help"], ["--version"], *([c, "--help"] for c in ("run", "plot", "eval", "export", "verify",
                                                                        "sweep")))


def test_help_and_version_do_not_load_torch():
    """`import fastddpg.cli`, every command's --help and --version answer without importing torch (each command
    loads what it needs when it runs). One subprocess checks them all: a fresh interpreter per argv."""
    code = ("import json, sys, subprocess\n"
            "argvs = json.loads(sys.argv[1])\n"
            "probe = ('import sys, io, contextlib\\nfrom fastddpg.cli import main\\n'\n"
            "         'out = io.StringIO()\\n'\n"
            "         'with contextlib.redirect_stdout(out):\\n'\n"
            "         '    try: main(sys.argv[1:])\\n'\n"
            "         '    except SystemExit as e: assert e.code == 0, e.code\\n'\n"
            "         'assert out.getvalue().strip(), \"nothing printed\"\\n'\n"
            "         'print(\"torch\" in sys.modules)')\n"
            "for argv in argvs:\n"
            "    p = subprocess.run([sys.executable, '-c', probe, *argv], capture_output=True, text=True)\n"
            "    print(' '.join(argv), p.returncode, p.stdout.strip(), p.stderr.strip()[-300:])\n")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(HELP_COMMANDS)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == len(HELP_COMMANDS)
    for line in lines:
        assert " 0 False" in line, line  # exit 0, something printed, no torch


def test_the_cli_module_does_not_load_torch():
    p = subprocess.run([sys.executable, "-c", "import sys, fastddpg.cli; print('torch' in sys.modules)"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stderr


def test_config_choices_match_the_algorithm_registry():
    from fastddpg.algos import algorithms
    from fastddpg.core.config import ALGOS, GRID_FIELDS
    from fastddpg.core.registry import CORE_METRICS

    found = algorithms()
    assert tuple(found) == ALGOS == ("ddpg", "td3", "sac", "crossq")
    assert {"policy_noise", "noise_clip"} <= set(GRID_FIELDS) and "policy_delay" not in GRID_FIELDS
    assert "init_alpha" in GRID_FIELDS
    for name, cls in found.items():
        assert cls.name == name and cls.metric_names[:len(CORE_METRICS)] == CORE_METRICS
