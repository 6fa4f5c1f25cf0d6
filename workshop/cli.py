"""`--key=value` overrides for the trainers' config dataclasses.

Unknown keys and unparsable values stop with a message that lists the valid
fields; `--help` prints each field with its default and its comment.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing


def _field_comments(cls) -> dict[str, str]:
    """The trailing `# comment` of each field line in the dataclass source."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2).strip()
    return comments


def _convert(raw: str, typ, key: str):
    if typ is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{key} expects true or false, got {raw!r}")
    origin = typing.get_origin(typ)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw.lower() in ("none", ""):
            return None
        return _convert(raw, args[0], key)
    try:
        return typ(raw)
    except (TypeError, ValueError):
        raise ValueError(f"--{key} expects {typ.__name__}, got {raw!r}") from None


def usage(cls) -> str:
    comments = _field_comments(cls)
    lines = [f"options (--key=value) of {cls.__name__}:"]
    for f in dataclasses.fields(cls):
        lines.append(f"  --{f.name}={f.default!s:<14} {comments.get(f.name, '')}")
    return "\n".join(lines)


def parse_config(cls, argv: list[str] | None = None):
    """Build ``cls()`` with ``--key=value`` overrides from argv; exit 2 on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    overrides = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            print(usage(cls))
            raise SystemExit(0)
        m = re.fullmatch(r"--([\w-]+)=(.*)", arg)
        key = m.group(1).replace("-", "_") if m else None
        if key not in names:
            sys.exit(f"error: unknown option {arg!r}\n{usage(cls)}")
        try:
            overrides[key] = _convert(m.group(2), hints[key], key)
        except ValueError as err:
            sys.exit(f"error: {err}")
    return cls(**overrides)
