"""Every command the README and docs/ show in a ```bash block is one this project accepts.

Project commands are checked without running them: the console script exists in setup.py and its
own argument parser accepts the line (argparse is stopped right after parsing; config overrides
such as `train.lr=1e-4` must load), `make X` names a Makefile target, `ros2 launch` names a launch
file and only arguments it declares, `ros2 run` names a console script and only parameters the
node declares. What `make demo` and `make test` then do is covered by test_demo.py and CI.
Optional parts written `[--flag]` count as given; lines with `...` are elisions and skipped.
"""
import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from sa4depth_core.config import load_config
from sa4depth_ros import params
from test_launch_config import _console_scripts, _launch_model

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXTERNAL = {"cd", "git", "rosdep", "pip", "colcon", "source", "export"}  # commands of other tools
EXTERNAL_MODULES = {"venv", "colcon"}  # `python3 -m X` of other tools


def _commands() -> list:
    """(doc name, command words) of every command in the ```bash blocks of the docs."""
    found = []
    for doc in DOCS:
        block = None
        for line in doc.read_text().splitlines():
            if line.startswith("```"):
                block = [] if line.strip() == "```bash" and block is None else None
                continue
            if block is None:
                continue
            block.append(line)
            text = " ".join(block)
            if text.rstrip().endswith("\\"):
                block[-1] = block[-1].rstrip()[:-1]
                continue
            block.clear()
            text = text.split(" #", 1)[0].strip() if not text.lstrip().startswith("#") else ""
            for part in (p.strip() for p in text.split("&&")):
                if part and "..." not in part:
                    found.append((doc.name, shlex.split(re.sub(r"\[([^\]]*)\]", r"\1", part))))
    return found


COMMANDS = _commands()


class _Parsed(Exception):
    def __init__(self, namespace):
        self.namespace = namespace


def _parse_with_main(module: str, argv: list, monkeypatch) -> argparse.Namespace:
    """The namespace that `module`'s main() parses from argv, without running anything else."""
    real = argparse.ArgumentParser.parse_args

    def stop_after_parsing(self, args=None, namespace=None):
        raise _Parsed(real(self, args, namespace))
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop_after_parsing)
    main = getattr(importlib.import_module(module), "main")
    with pytest.raises(_Parsed) as parsed:
        main(argv)
    return parsed.value.namespace


def _check_ros_args(executable: str, words: list) -> None:
    declared = {"perception_node": set(params.BY_NAME), "trainer_node": set(params.TRAINER.by_name)}[executable]
    for flag, value in zip(words, words[1:]):
        if flag == "-p":
            assert value.split(":=")[0] in declared, f"{executable} has no parameter {value}"
        if flag == "--params-file":
            assert (REPO / value).is_file(), value


def test_the_docs_show_commands():
    names = {words[0] for _, words in COMMANDS}
    assert {"make", "sa4depth-train", "sa4depth-eval", "ros2", "sa4depth-run", "torchrun"} <= names


@pytest.mark.parametrize("doc, words", COMMANDS, ids=[" ".join(w)[:70] for _, w in COMMANDS])
def test_documented_command_is_accepted(doc, words, monkeypatch):
    scripts = _console_scripts()
    head, rest = words[0], words[1:]
    if head in EXTERNAL or (head == "python3" and rest[:1] == ["-m"] and rest[1] in EXTERNAL_MODULES):
        return
    if head == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M)
        assert rest[0] in targets, f"{doc}: no make target {rest[0]}"
    elif head == "ros2" and rest[0] == "launch":
        assert rest[1] == "sa4depth_ros", doc
        arguments, _ = _launch_model(REPO / "launch" / rest[2])
        for given in rest[3:]:
            assert given.split(":=")[0] in arguments, f"{doc}: {rest[2]} has no argument {given}"
    elif head == "ros2" and rest[0] == "run":
        assert rest[1] == "sa4depth_ros" and rest[2] in scripts, doc
        _check_ros_args(rest[2], rest[3:])
    elif head == "torchrun":
        module = rest[rest.index("-m") + 1]
        namespace = _parse_with_main(module, rest[rest.index("-m") + 2:], monkeypatch)
        load_config(None, list(getattr(namespace, "overrides", [])))
    else:
        assert head in scripts, f"{doc}: '{head}' is not a console script of setup.py"
        module = scripts[head].split(":")[0]
        namespace = _parse_with_main(module, rest, monkeypatch)
        overrides = getattr(namespace, "overrides", None)
        if overrides:
            load_config(None, list(overrides))
