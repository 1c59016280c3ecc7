"""The package's layers import one way only: no import cycle (imports inside functions included), every module in
a layer, every import from the same layer or one below, and the plotting and evaluation modules usable without
the training stack."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import fastddpg

PACKAGE = Path(fastddpg.__file__).resolve().parent

# (0) configuration and names, (1) the parts and the math, (2) training, (3) files: run directory, checkpoints,
# evaluation, export, video, (4) what a user touches: the Python API, plots, console, CLI, verify. README's
# Layout table says the same.
LAYERS = {
    0: {"config", "registry", "schema", "fileio", "threads", "configfile", "verifyoptions"},
    1: {"networks", "noise", "replay", "envs", "torch_pendulum", "update", "compile", "algos",
        # every algorithm file: adding one needs no line here
        *(f"algos.{p.stem}" for p in (PACKAGE / "algos").glob("*.py") if p.stem != "__init__")},
    2: {"devicelog", "probes", "failsafe", "trainer"},
    3: {"rundir", "checkpoint", "evaluate", "export", "video", "tensorboard", "policy", "resuming"},
    4: {"plots", "bands", "reporting", "api", "verify", "cli", "cli.main", "cli.options", "cli.run", "cli.plot",
        "cli.eval", "cli.export", "cli.verify", "cli.sweep", "cli.__main__", "sweeps", "sweeps.spec", "sweeps.cluster",
        "sweeps.trial", "sweeps.progress", "sweeps.driver", "sweeps.resume", "sweeps.results", "sweeps.report"},
}
LAYER_OF = {m: n for n, mods in LAYERS.items() for m in mods}


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if parts:  # the package's own __init__ imports lazily, by name
            names.append(".".join(parts))
    return names


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
                candidates = [target] + ([f"{target}.{a.name}".lstrip(".") for a in node.names] if not node.module
                                         else [])  # `from .. import sweeps`: the module sweeps
            elif node.module and node.module.startswith("fastddpg"):
                target = node.module.removeprefix("fastddpg").lstrip(".")
                candidates = [target] + [f"{target}.{a.name}" if target else a.name for a in node.names]
            else:
                continue
            found |= {c for c in candidates if c in LAYER_OF}
        elif isinstance(node, ast.Import):
            for a in node.names:
                name = a.name.removeprefix("fastddpg").lstrip(".")
                if a.name.startswith("fastddpg.") and name in LAYER_OF:
                    found.add(name)
    found.discard(module)
    return found


def test_every_module_has_a_layer():
    assert set(module_names()) == set(LAYER_OF), set(module_names()) ^ set(LAYER_OF)


def test_imports_go_down_or_sideways_only():
    upward = [(m, i) for m in LAYER_OF for i in imports_of(m) if LAYER_OF[i] > LAYER_OF[m]]
    assert upward == [], "modules importing from a higher layer: " + ", ".join(f"{m} -> {i}" for m, i in upward)


def test_no_import_cycle():
    graph = {m: imports_of(m) - {p for p in LAYER_OF if m.startswith(p + ".")} for m in LAYER_OF}
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
    assert "plots" in imports_of("api") and "reporting" in imports_of("cli.run")  # imported inside cmd_run
    assert "sweeps" in imports_of("cli.sweep")  # `from .. import sweeps`, inside its command


def test_plotting_and_evaluation_do_not_load_the_trainer():
    code = ("import sys, fastddpg.plots, fastddpg.evaluate, fastddpg.rundir\n"
            "print(sorted(m for m in sys.modules if m in ('fastddpg.trainer', 'fastddpg.checkpoint', "
            "'fastddpg.api')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


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
    from fastddpg.config import ALGOS, GRID_FIELDS
    from fastddpg.registry import CORE_METRICS

    found = algorithms()
    assert tuple(found) == ALGOS == ("ddpg", "td3")
    assert {"policy_noise", "noise_clip"} <= set(GRID_FIELDS) and "policy_delay" not in GRID_FIELDS
    for name, cls in found.items():
        assert cls.name == name and cls.metric_names[:len(CORE_METRICS)] == CORE_METRICS
