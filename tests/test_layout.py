"""The shape of the house: module-level imports inside the package form no cycle, the HTTP layer does not
import the command-line layer, and the model-free modules import no torch."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "deepspeech_pytorch")


def import_graph():
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                modules[module[:-len(".__init__")] if module.endswith(".__init__") else module] = path
    graph = {module: set() for module in modules}
    for module, path in modules.items():
        for node in ast.parse(open(path, encoding="utf-8").read()).body:  # module level: what runs on import
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deepspeech_pytorch"):
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    graph[module].add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[module].update(a.name for a in node.names if a.name.startswith("deepspeech_pytorch"))
    return graph


def test_module_imports_have_no_cycle():
    graph = import_graph()
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if target not in graph:
                continue
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_server_does_not_import_the_command_line_layer():
    graph = import_graph()
    serving = [module for module in graph if module.startswith("deepspeech_pytorch.serving")]
    assert serving and not any("deepspeech_pytorch.cli" in graph[module] for module in serving)


def test_settings_and_audio_load_without_torch():
    """configs (checked before anything heavy) and audio decoding import no torch."""
    probe = ("import sys; import deepspeech_pytorch.configs, deepspeech_pytorch.audio, deepspeech_pytorch.labels; "
             "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
