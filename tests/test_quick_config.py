"""transcribe.py without Hydra on a plain command line (quick_config): the config is the one Hydra composes,
values read by Hydra's grammar, and every other command line (--help, --cfg job, +key, mistakes) still
reaches Hydra and reads exactly as before; the fast path imports neither Hydra nor torch."""

import json
import math
import os
import random
import re
import subprocess
import sys

import pytest
from hydra import compose as hydra_compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf

from deepspeech_pytorch.cli import hydra_quote, prepare_arguments
from deepspeech_pytorch.configs import TranscribeConfig, register_configs
from deepspeech_pytorch.quick_config import NotPlain, compose, parse_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")
SCRIPT = os.path.join(ROOT, "transcribe.py")
SAMPLE = os.path.join(ROOT, "deepspeech_pytorch", "pretrained", "samples", "sample1.wav")

# transcribe.py's Hydra path alone, as the script ran before quick_config: the same command_line and Hydra main
HYDRA_ONLY = ("import runpy, sys; sys.argv[0] = {script!r}; script = runpy.run_path({script!r}, run_name='transcribe')\n"
              "script['main'].__module__ = '__main__'  # Hydra finds the config folder beside the script's file\n"
              "from deepspeech_pytorch.cli import command_line\n"
              "with command_line('transcribe', positional='audio_path'):\n"
              "    script['hydra_main']()").format(script=SCRIPT)


def hydra_value(text):
    """What Hydra's override parser reads after `key=`, quoted strings as plain strings."""
    return OverridesParser.create().parse_override(f"key={text}").value()


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# values typed on command lines: every one of them is read without Hydra, as Hydra reads it
PLAIN_VALUES = ["8", "-1", "+5", "0", "1_000", "007", "0_1", "1.5", "-.5", "1.", "1e3", "1E-05", "2.5e+2", "1_0.5",
                "inf", "-inf", "NaN", "true", "False", "TRUE", "null", "NULL", "beam", "greedy", "cuda:1",
                "a.wav", "dir/x-y_z.flac", "1.5.2", "1e", "true_", "nullable", "infinity", "--5", "5-", ".", "+",
                "a@b%c*d?e|f", "'a.wav'", '"b c.wav"', "''", "'it\\'s.wav'", "'back\\\\slash'", "'a\\b'",
                "'end\\\\'", "'\"'", '"\'"', "'a,b.wav'", "'x=y.wav'", "'(take 2).wav'", "'[draft].wav'",
                "'hash#1.wav'", "'ünïcødé.wav'", "[]", "['a.wav']", "['a.wav','b c.wav']", "[a.wav,b.wav]",
                "[1,2.5,null,true]", "['it\\'s',\"x\"]"]
# values left to Hydra: sweeps, interpolations, spaces, escapes, groups, functions, empty values, mistakes
HYDRA_VALUES = ["", " 3", "a b", "a,b", "${x}", "'${x}'", "'\\${x}'", "\\,", "{a:1}", "[a, b]", "[a,]", "[[a]]",
                "int(3)", "ünï", "a#b", "'a'b", "'a", "a'", "[a", "a]", "~", "'a''"]


@pytest.mark.parametrize("text", PLAIN_VALUES)
def test_plain_values_read_as_hydra_reads_them(text):
    assert same(parse_value(text), hydra_value(text)), text


@pytest.mark.parametrize("text", HYDRA_VALUES)
def test_other_values_are_left_to_hydra(text):
    with pytest.raises(NotPlain):
        parse_value(text)


def test_any_quoted_name_reads_back_as_hydra_reads_it():
    """Random names (quotes, backslashes, commas, brackets, spaces, non-ASCII) quoted as prepare_arguments
    quotes them, alone and in lists, and random raw text: whatever parse_value accepts, Hydra reads the same."""
    chars = "ab \\'\"[],=${}#ü.:-_0"
    generator = random.Random(20)
    accepted = 0
    for _ in range(3000):
        names = ["".join(generator.choice(chars) for _ in range(generator.randint(0, 8)))
                 for _ in range(generator.randint(1, 3))]
        for text in (hydra_quote(names[0]), "[" + ",".join(hydra_quote(name) for name in names) + "]",
                     "".join(generator.choice(chars) for _ in range(generator.randint(1, 10)))):
            try:
                mine = parse_value(text)
            except NotPlain:
                continue
            accepted += 1
            try:
                theirs = hydra_value(text)
            except HydraException as error:
                pytest.fail(f"{text!r}: read as {mine!r}, Hydra refuses it ({error})")
            assert same(mine, theirs), text
    assert accepted > 2000  # most quoted names take the fast path


def describe(node):
    """A config's every node: its class, OmegaConf metadata and value, to compare two configs exactly."""
    if isinstance(node, (DictConfig, ListConfig)):
        meta = node._metadata
        head = (type(node).__name__, meta.object_type, meta.ref_type, meta.optional, meta.key, dict(meta.flags),
                meta.key_type, meta.element_type)
        if node._is_missing() or node._is_none():
            return head, node._value()
        keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
        return head, [(key, describe(node._get_node(key))) for key in keys]
    meta = node._metadata
    return type(node).__name__, meta.ref_type, meta.optional, meta.key, dict(meta.flags), repr(node._value())


def hydra_config(arguments):
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name="transcribe", overrides=arguments)


# command lines as people type them (the files are plain arguments): all composed without Hydra
PLAIN_LINES = [
    [],
    ["a.wav"],
    ["a.wav", "b c.wav", "Belladonna's Red Snare.wav", "back\\slash.wav", 'say "hi".wav'],
    ["audio_path=x.wav", "backend=onnxruntime", "decoder.type=beam", "decoder.beam_size=16", "decoder.lm.alpha=0.8",
     "decoder.lm.beta=1", "decoder.lm.path=my lm.bin", "decoder.lm.use_model_lm=false"],
    ["a.wav", "batch_size=1", "device=cpu", "chunk_seconds=20", "vad=false", "word_timings=False",
     "output_format=srt", "output_dir=subs", "model_path=null"],
    ["a.wav", "batch_size=4", "batch_size=2"],
    ["audio_path=[a.wav,b.wav]"],
    ["a.wav", "chunk_seconds=nan"],  # composed; validate() then refuses it in one line, as after Hydra
    ["a.wav", "decoder.n_best=0"],
]
# command lines Hydra reads: options, +/~, groups and sections, sweeps, interpolations, values the schema refuses
HYDRA_LINES = [
    ["--cfg", "job", "a.wav"], ["a.wav", "+decoder.typo=1"], ["a.wav", "~vad"], ["a.wav", "decoder=beam"],
    ["a.wav", "decoder.type=beam,greedy"], ["a.wav", "batch_size=abc"], ["a.wav", "batch_size=${oc.env:N}"],
    ["a.wav", "hydra.verbose=true"], ["audio_pth=x.wav"], ["a.wav", "vad=maybe"], ["a.wav", "batch_size= 3"],
]


@pytest.mark.parametrize("line", PLAIN_LINES, ids=lambda line: " ".join(line) or "(nothing)")
def test_plain_command_lines_compose_as_hydra_composes_them(line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the names are not files here: taken literally
    arguments = prepare_arguments(line, TranscribeConfig, "audio_path", "transcribe.py")
    config = compose(TranscribeConfig, arguments, "transcribe", CONFIG_DIR)
    assert config is not None, arguments
    assert describe(config) == describe(hydra_config(arguments))


@pytest.mark.parametrize("line", HYDRA_LINES, ids=" ".join)
def test_other_command_lines_are_left_to_hydra(line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments = prepare_arguments(line, TranscribeConfig, "audio_path", "transcribe.py")
    assert compose(TranscribeConfig, arguments, "transcribe", CONFIG_DIR) is None


def test_a_config_file_of_the_script_name_is_left_to_hydra(tmp_path):
    """A transcribe.yaml in the script's config folder is Hydra's primary config: Hydra composes it."""
    (tmp_path / "transcribe.yaml").write_text("batch_size: 3\n")
    assert compose(TranscribeConfig, ["audio_path=a.wav"], "transcribe", str(tmp_path)) is None
    assert compose(TranscribeConfig, ["audio_path=a.wav"], "transcribe", str(tmp_path / "none")) is None
    assert compose(TranscribeConfig, ["audio_path=a.wav"], "transcribe", CONFIG_DIR).audio_path == "a.wav"


def run(*command, cwd, env=None):
    env = {k: v for k, v in (env or os.environ).items() if k not in ("DEEPSPEECH_DEBUG", "HYDRA_FULL_ERROR")}
    result = subprocess.run([sys.executable, *command], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    timing = r'"seconds": [0-9.]+, "rtf": [0-9.]+|in [0-9.]+ s \(RTF [0-9.]+\); model loaded in [0-9.]+ s'
    return result.returncode, re.sub(timing, "T", result.stdout), re.sub(timing, "T", result.stderr)


@pytest.mark.parametrize("line", [
    ["--help"], ["--cfg", "job", "a.wav", "decoder.type=beam"], ["--cfg", "job"], ["--info"],
    ["a.wav", "batch_size=abc"], ["audio_pth=x.wav"], ["a.wav", "+decoder.typo=1"], ["a.wav", "decoder=beam"],
    ["a.wav", "decoder.type=beam,greedy"], ["a.wav", "--verbose"],  # Hydra reads these
    [], ["a.wav", "batch_size=0"], ["a.wav", "decoder.lm.path=x.bin"], ["a.wav", "chunk_seconds=inf"],
    ["missing.wav", "backend=onnxruntime"],  # composed quickly, refused by the same checks
    [SAMPLE, "backend=onnxruntime", "word_timings=false"], [SAMPLE, "backend=onnxruntime", "output_format=txt"],
], ids=lambda line: " ".join(os.path.basename(item) for item in line) or "(nothing)")
def test_transcribe_py_answers_as_hydra_alone_does(line, tmp_path):
    """Output, errors and exit status of transcribe.py equal those of its Hydra path alone, line by line."""
    quick = run(SCRIPT, *line, cwd=tmp_path)
    assert quick == run("-c", HYDRA_ONLY, *line, cwd=tmp_path)
    if "--cfg" in line:
        arguments = prepare_arguments([item for item in line if item not in ("--cfg", "job")], TranscribeConfig,
                                      "audio_path", "transcribe.py")
        config = compose(TranscribeConfig, arguments, "transcribe", CONFIG_DIR)
        assert quick[1] == OmegaConf.to_yaml(config)  # what --cfg job shows is what the fast path composes


def test_a_crash_in_the_script_is_shown_as_hydra_shows_it(tmp_path):
    """An error that is no user mistake keeps Hydra's report: the overrides, the traceback from the script's main,
    the HYDRA_FULL_ERROR hint, exit status 1. The crash is injected (a sitecustomize that makes writing the output
    file raise OSError), since every known crash of this kind was fixed (a long name's temporary twin was one)."""
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "sitecustomize.py").write_text(
        "import deepspeech_pytorch.subtitles as subtitles\n"
        "def write_output(path, text):\n"
        "    raise OSError(28, 'No space left on device (injected)', path)\n"
        "subtitles.write_output = write_output\n")
    line = [SAMPLE, "backend=onnxruntime", "output_format=txt", "output_dir=out"]
    (tmp_path / "out").mkdir()
    environment = {**os.environ, "PYTHONPATH": f"{crash}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    quick = run(SCRIPT, *line, cwd=tmp_path, env=environment)
    assert quick[0] == 1 and "Error executing job with overrides: [" in quick[2] and "HYDRA_FULL_ERROR=1" in quick[2]
    assert 'transcribe.py", line' in quick[2] and ", in main" in quick[2] and "No space left on device (injected)" in quick[2]
    hydra_only = run("-c", HYDRA_ONLY, *line, cwd=tmp_path, env=environment)
    assert quick == hydra_only


def test_the_fast_path_imports_neither_hydra_nor_torch(tmp_path):
    """-X importtime lists every module imported: ONNX Runtime, and none of Hydra, torch or the server's stack."""
    for decoder in ("greedy", "beam"):
        result = subprocess.run([sys.executable, "-X", "importtime", SCRIPT, SAMPLE, "backend=onnxruntime",
                                 f"decoder.type={decoder}"], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["transcript"]
        imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "onnxruntime" in imported
        assert not imported & {"hydra", "torch", "scipy", "pandas", "fastapi", "uvicorn", "starlette", "pydantic"}


def test_the_console_script_takes_the_fast_path_too(tmp_path):
    """deepspeech-transcribe (pip's console script) composes a plain line without Hydra; with a transcribe.yaml in
    ./configs, which Hydra would read as the primary config, Hydra composes it and says what it says."""
    import shutil

    script = shutil.which("deepspeech-transcribe", path=os.path.dirname(sys.executable))
    assert script is not None, "is the package installed (pip install -e .)?"
    result = subprocess.run([sys.executable, "-X", "importtime", script, SAMPLE, "backend=onnxruntime"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["transcript"]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "onnxruntime" in imported and "hydra" not in imported and "torch" not in imported
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "transcribe.yaml").write_text("batch_size: 0\n")
    result = subprocess.run([script, SAMPLE, "backend=onnxruntime"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1 and "validated against ConfigStore schema" in result.stderr, result.stderr
