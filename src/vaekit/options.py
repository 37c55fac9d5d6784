"""Typed options, and the one mechanism that turns them into command-line flags.

A command's options are a dataclass: the core's (commands.py) and, where a data kind adds its own,
the kind's (`Kind.command_options`). Each field is a flag `--field-name`; its annotation says how
the text is read (int, float, str, bool, list[int], list[str], X | None), its metadata gives the
help, choices and any other spelling. Every flag defaults to None on the parser, so the CLI knows
which ones were given: a given flag that the run's kind does not declare is refused, never ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING, field

from .errors import VaekitError


def option(default=None, help: str = "", *, flag: str | None = None, choices=None, parse=None,
           metavar=None, repeat: bool = False, nargs: int | None = None, default_factory=MISSING):
    """A dataclass field that is also a flag. `flag` replaces `--field-name`; `parse` reads the
    text (argparse type); `repeat` collects every use of the flag in a list."""
    meta = {"help": help, "flag": flag, "choices": choices, "parse": parse, "metavar": metavar, "repeat": repeat,
            "nargs": nargs,
            "switch": default is False}  # a switch: --x turns it on, nothing turns it off
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def int_list(text: str) -> list[int]:
    """'512,256' -> [512, 256]; 'none' -> [] (no hidden layer: a linear map)."""
    if text.strip().lower() == "none":
        return []
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers or none, got {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError("expected layer sizes, e.g. 512,256, or none for no hidden layer")
    return sizes


def str_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):  # nan fails too
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def checked_value(f: dataclasses.Field, value):
    meta = f.metadata
    if meta.get("choices") and value is not None and value not in meta["choices"]:
        raise VaekitError(f"{flag_name(f)} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    parse = meta.get("parse")
    if parse and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            return parse(value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
            raise VaekitError(f"{flag_name(f)}: {e}") from None
    return value


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def annotation_of(f: dataclasses.Field) -> str:
    """The field's annotation as written ("int", "list[str]", "float | None"), whether the module
    postpones annotations or not."""
    if isinstance(f.type, str):
        return f.type
    return f.type.__name__ if type(f.type) is type else str(f.type).replace("typing.", "")  # int; list[int]


def argparse_kwargs(f: dataclasses.Field) -> dict:
    """How argparse reads the field's flag: by its annotation, unless metadata says otherwise."""
    meta, annotation = f.metadata, annotation_of(f)
    help = meta.get("help")
    kwargs = {"dest": f.name, "default": None, "help": help.replace("%", "%%") if help else None}  # argparse %-formats
    if meta.get("choices"):
        kwargs["choices"] = list(meta["choices"])
    if "bool" in annotation:
        if meta.get("switch"):
            kwargs.update(action="store_const", const=True)
        else:  # --x / --no-x
            kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    parse = meta.get("parse") or {"int": int, "float": float}.get(annotation.split("|")[0].strip())
    if meta.get("nargs"):  # a fixed number of values, each parsed alone
        kwargs["nargs"] = meta["nargs"]
        parse = meta.get("parse") or (int if "list[int]" in annotation else None)
    elif "list[int]" in annotation:
        parse = meta.get("parse") or int_list
    elif "list[str]" in annotation and not meta.get("repeat"):
        parse = meta.get("parse") or str_list
    if parse:
        kwargs["type"] = parse
    if meta.get("repeat"):
        kwargs["action"] = "append"
    kwargs["metavar"] = meta.get("metavar") or (None if meta.get("choices") else f.name.upper())
    return kwargs


def add_flags(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    """A flag for each field of dataclass `cls` not named in `skip`."""
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            parser.add_argument(flag_name(f), **argparse_kwargs(f))


def given(args: argparse.Namespace, cls) -> dict:
    """The fields of `cls` whose flags were given: {name: value}."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def merged(name: str, *classes):
    """One options dataclass with the fields of `classes` (the core's, then a kind's); its
    __post_init__ runs each one's checks."""
    fields, checks = {}, []
    for cls in classes:
        for f in dataclasses.fields(cls):
            copy = field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)
            fields[f.name] = (f.name, f.type, copy)
        if hasattr(cls, "__post_init__"):
            checks.append(cls.__post_init__)

    def post_init(self):
        for check in checks:
            check(self)

    return dataclasses.make_dataclass(name, list(fields.values()), namespace={"__post_init__": post_init})


def build_options(cls, values: dict):
    """`cls(**values)`; a check that fails is a VaekitError (one line, exit 2). Values given from
    Python (or a server's JSON) pass the checks their flags' parsing makes: choices, positive."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {name: checked_value(fields[name], v) if name in fields else v for name, v in values.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise VaekitError(str(e)) from None
