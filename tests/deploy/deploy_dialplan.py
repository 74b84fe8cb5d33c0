"""Evaluate the XML dialplan in freeswitch/ the way FreeSWITCH would.

Parsing uses frslint (its loader expands X-PRE-PROCESS includes and builds
Context / Extension / Condition / Action objects).  frslint's own evaluator
(`frslint debug`) anchors regexes with re.match, never substitutes $1, does not
expand $${globals} in expressions or ${vars} in condition fields, knows no
env-set, and prints and exit()s; so the evaluation itself is reimplemented
here with FreeSWITCH's semantics (mod_dialplan_xml):

* $${var} is replaced at load time from vars.xml, processed in order: set,
  env-set (data="name=$ENV"), exec-set (here a placeholder; never run).
* a condition's field is a caller-profile field (destination_number ...) or,
  when it contains ${...}, the expansion of channel variables, falling back to
  global variables; the expression is searched (PCRE, not anchored).
* conditions of an extension are ANDed (break="on-false", the default);
  $1..$9 in action data come from that condition's captures; ${...} in action
  data is left for run time.
* the first extension that matches wins (continue="true" is not used here).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from debug.FreeswitchLoader import FreeswitchLoader

CONF_DIR = Path(__file__).resolve().parents[2] / "freeswitch"
PREPROCESS = re.compile(r'<X-PRE-PROCESS\s+cmd="([\w-]+)"\s+data="([^"]*)"\s*/>')
BUILTINS = {"local_ip_v4": "192.0.2.10", "local_ip_v6": "::1", "hostname": "fs-test"}


def expand_globals(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\$\{([^}]+)\}", lambda m: variables.get(m.group(1), ""), text)


def load_globals(env: dict[str, str], conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """vars.xml in order, with `env` standing in for the process environment."""
    variables = dict(BUILTINS)
    for cmd, data in PREPROCESS.findall((conf_dir / "vars.xml").read_text()):
        name, _, value = expand_globals(data, variables).partition("=")
        if cmd == "set":
            variables[name] = value
        elif cmd == "exec-set":
            variables[name] = f"<random:{name}>"
        elif cmd == "env-set":
            if not value.startswith("$"):
                raise ValueError(f"env-set {name}: FreeSWITCH needs data=\"name=$ENV\", got {value!r}")
            if value[1:] in env:
                variables[name] = env[value[1:]]
        else:
            raise ValueError(f"vars.xml: unexpected X-PRE-PROCESS cmd {cmd!r}")
    return variables


def preprocess(env: dict[str, str], conf_dir: Path = CONF_DIR) -> str:
    """The whole configuration as FreeSWITCH's preprocessor writes it (src/switch_xml.c preprocess()).

    Per line: expand $${vars}; drop lines holding <include>, </include> or <?;
    run <X-PRE-PROCESS> directives (include: glob relative to the including file,
    in name order); copy everything else.
    """
    variables = dict(BUILTINS)
    out: list[str] = []

    def walk(path: Path) -> None:
        for line in path.read_text().splitlines():
            line = expand_globals(line, variables)
            if "<include>" in line or "</include>" in line or "<?" in line:
                continue
            m = PREPROCESS.search(line)
            if m is None:
                out.append(line)
                continue
            cmd, data = m.groups()
            name, _, value = data.partition("=")
            if cmd == "include":
                for inc in sorted(path.parent.glob(data)):
                    walk(inc)
            elif cmd == "set":
                variables[name] = value
            elif cmd == "exec-set":
                variables[name] = f"random-{name}"
            elif cmd == "env-set" and value.startswith("$") and value[1:] in env:
                variables[name] = env[value[1:]]

    walk(conf_dir / "freeswitch.xml")
    return "\n".join(out)


@dataclass(frozen=True)
class Step:
    app: str
    data: str


@dataclass(frozen=True)
class Result:
    extension: str | None
    steps: tuple[Step, ...]

    def first(self, app: str) -> Step | None:
        return next((s for s in self.steps if s.app == app), None)


def _captures(groups: tuple[str, ...]) -> Callable[[re.Match[str]], str]:
    """Replacement function for $N: the Nth capture, "" when absent (switch_perform_substitution)."""

    def sub(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return (groups[n] or "") if n < len(groups) else ""

    return sub


class Dialplan:
    def __init__(self, env: dict[str, str] | None = None, conf_dir: Path = CONF_DIR) -> None:
        self.globals = load_globals(env or {}, conf_dir)
        with contextlib.redirect_stdout(io.StringIO()):
            fs = FreeswitchLoader().load(str(conf_dir / "freeswitch.xml"))
        self.contexts = fs.context_instructions

    def _field(self, field: str, channel: dict[str, str]) -> str:
        if "${" in field:
            def lookup(m: re.Match[str]) -> str:
                return channel.get(m.group(1), self.globals.get(m.group(1), ""))

            return re.sub(r"\$\{([^}]+)\}", lookup, field)
        return channel.get(field, "")

    def route(self, context: str, destination: str, **channel: str) -> Result:
        if context not in self.contexts:
            raise KeyError(f"no context {context!r} in the dialplan")
        channel = {"destination_number": destination, "context": context, **channel}
        for ext in self.contexts[context].extensions:
            steps: list[Step] = []
            matched = True
            for cond in ext.conditions:
                if cond.field is None and cond.expression is None:
                    groups: tuple[str, ...] = ()
                    ok = True
                else:
                    expression = expand_globals(cond.expression or "", self.globals)
                    value = self._field(expand_globals(cond.field or "", self.globals), channel)
                    m = re.search(expression, value)
                    ok = m is not None
                    groups = (m.group(0), *m.groups()) if m else ()
                if not ok:
                    matched = False
                    break
                for action in cond.actions:
                    data = expand_globals(action.data or "", self.globals)
                    data = re.sub(r"\$(\d)", _captures(groups), data)
                    steps.append(Step(action.application, data))
            if matched and steps:
                return Result(ext.name, tuple(steps))
        return Result(None, ())
