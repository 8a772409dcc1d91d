"""Settings that are also command-line options: declared once, as dataclass fields.

A field made with `option(default, help, ...)` carries its help text; `dataclass_options(cls)`
turns such fields into argparse arguments (`--name-with-dashes`) whose default is unset (None),
so that the dataclass's own default applies, and whose help shows that default. A `check`
function, when given, is the same rule the library applies, run at parse time too. This module
imports nothing from the package but `errors`.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

_KINDS = {"int": int, "float": float, "int | None": int, "float | None": float}


def option(
    default: Any, help: str, group: str = "", cli_type: Any = None, flag: str | None = None,
    **argparse_kw,
) -> Any:  # fmt: skip
    """A dataclass field that is also an option of `group`. `cli_type`: the option's type when
    it differs from the field's (a comma-separated list read as text, for example); `flag`: the
    option's name when it is not `--field-name`."""
    meta = {"group": group, "help": help, "type": cli_type, "flag": flag, **argparse_kw}
    if default is list:
        return dataclasses.field(default_factory=list, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def nested(cls: type, prefix: str = "", default: Callable[[], Any] | None = None) -> Any:
    """A dataclass field holding a `cls` value (default: `default()` or `cls()`) whose option
    fields are options of the outer class too, named `--PREFIX-FIELD` (stored as
    `PREFIX_FIELD`)."""
    return dataclasses.field(
        default_factory=default or cls, metadata={"nested": cls, "prefix": prefix}
    )


def nested_values(cls: type, opts: dict[str, Any]) -> dict[str, Any]:
    """The values of `cls`'s nested fields gathered from flat option values (`PREFIX_FIELD`), as
    {field: {inner field: value}}; unset (None) options are left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        inner = f.metadata.get("nested")
        if inner is None:
            continue
        prefix = f.metadata.get("prefix", "")
        out[f.name] = {
            g.name: opts[prefix + g.name]
            for g in dataclasses.fields(inner)
            if opts.get(prefix + g.name) is not None
        }
    return out


def _checked(name: str, kind: Callable, check: Callable | None) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
            if check is not None:
                check(name, value)
        except (ValueError, ConfigError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parse


def dataclass_options(
    cls: type, group: str | None = None, check: Callable[[str, Any], None] | None = None
) -> list[tuple[str, dict]]:
    """(flag, argparse keywords) of the option fields of `cls` (of `group`, when given),
    nested dataclass fields included (see `nested`)."""
    return _options(cls, group, check, "")


def _options(cls: type, group: str | None, check, prefix: str) -> list[tuple[str, dict]]:
    out = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        if "nested" in meta:
            out += _options(meta["nested"], group, check, prefix + meta.get("prefix", ""))
            continue
        if "help" not in meta or (group is not None and meta.get("group") != group):
            continue
        flag = meta.pop("flag", None) or "--" + (prefix + f.name).replace("_", "-")
        kw = {k: v for k, v in meta.items() if k not in ("group", "type") and v is not None}
        if prefix or flag != "--" + f.name.replace("_", "-"):
            kw["dest"] = prefix + f.name
        tname = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if tname == "bool":
            kw["action"] = "store_true"
        else:
            kind = meta.get("type") or _KINDS.get(tname, str)
            kw.setdefault("type", _checked(prefix + f.name, kind, check))
        if f.default not in (None, False, dataclasses.MISSING) and "default" not in kw["help"]:
            kw["help"] += f" (default: {f.default})"
        out.append((flag, kw))
    return out


# ---------------------------------------------------------------- option tables
# One option per line: `FLAGS[:TYPE][=DEFAULT]  help`; FLAGS "--a|--b", a trailing `!` makes a
# switch (`--no-x!dest` stores False into dest), `?`/`+` a positional's arity; TYPE is pos
# (whole number ≥ 1), nat (≥ 0) or float. A command table starts each command with
# `[name] option groups | help`.
TYPES = {"pos": 1, "nat": 0, "float": float}


def whole(lowest: int):
    def parse(s: str) -> int:
        if not s.lstrip("-").isdigit() or int(s) < lowest:
            raise argparse.ArgumentTypeError(f"{s!r}: give a whole number ≥ {lowest}")
        return int(s)

    return parse


def add_table(p, table: str) -> None:
    """Add the options of a table (see the module doc) to parser `p`."""
    for line in filter(str.strip, table.strip().splitlines()):
        spec, _, help = line.partition("  ")
        spec, _, default = spec.partition("=")
        spec, _, kind = spec.partition(":")
        kw: dict = {"help": help.strip(), "default": default or None}
        if "!" in spec:
            spec, _, dest = spec.partition("!")
            kw |= {"action": "store_false" if dest else "store_true", "default": None}
            kw |= {"dest": dest} if dest else {}
        elif spec[-1] in "?+*":
            spec, kw["nargs"] = spec[:-1], spec[-1]
        if kind:
            typ = TYPES[kind]
            kw["type"] = typ if callable(typ) else whole(typ)
            kw["default"] = kw["type"](default) if default else None
        kw = {k: v for k, v in kw.items() if v is not None}
        p.add_argument(*spec.split("|"), **kw)


def parse_commands(table: str) -> dict[str, tuple[str, str, str]]:
    """name → (help, option groups, option table) from a command table."""
    out: dict[str, tuple[str, str, str]] = {}
    for block in table.split("\n[")[1:]:
        head, _, table = block.partition("\n")
        name, _, rest = head.partition("] ")
        parents, _, help = rest.partition("| ")
        out[name] = (help, parents.strip(), table)
    return out


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default, unless it has none or its help already says it."""

    def _get_help_string(self, action):
        h, d = action.help or "", action.default
        shown = d not in (None, False, True, argparse.SUPPRESS) and action.option_strings
        return h + (f" (default: {d})" if shown and "default" not in h else "")
