"""Strict YAML for files that come in through pull requests: read plainly, written the same way.

Files are read as plain YAML only: anchors, aliases, merge keys and tags other than the standard
scalar, mapping and sequence ones are refused while composing (so a "billion laughs" is never
expanded), and a file larger than `MAX_YAML_BYTES` or nested deeper than `MAX_YAML_DEPTH` is
refused outright. Output has sorted keys and a fixed style, so the same data always gives the
same bytes. `line_of` finds a key path's line in the same node tree (for errors and edits).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from graphops.errors import ConfigError

MAX_YAML_BYTES = 1024 * 1024
"""Largest environment.yaml or release.yaml read (1 MiB); checked before parsing."""

MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and sequences accepted in an environment file."""

_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")
)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """Plain YAML only: no duplicate keys, anchors, aliases, merge keys or non-standard tags.

    PyYAML silently keeps the last of duplicate keys and expands aliases when constructing; both
    are refused here, aliases at compose time so nothing is ever expanded.
    """

    _depth = 0

    def _refuse(self, what: str, mark: Any, fix: str) -> ConfigError:
        """A ConfigError at ``mark`` in the file being read."""
        return ConfigError(
            f"{what} is not allowed: environment files are plain YAML (no anchors, aliases, "
            "merge keys or custom tags).",
            fix=fix,
            file=self.name,
            line=mark.line + 1,
        )

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose a node, refusing aliases, anchors, explicit non-standard tags, deep nesting."""
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        if isinstance(event, yaml.AliasEvent):
            raise self._refuse(
                f"An alias (*{event.anchor})", event.start_mark, "Write the value out in full."
            )
        if getattr(event, "anchor", None) is not None:
            raise self._refuse(
                f"An anchor (&{event.anchor})",
                event.start_mark,
                "Remove the anchor and write each value out in full.",
            )
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in _PLAIN_TAGS:
            raise self._refuse(
                f'The tag "{tag}"', event.start_mark, "Remove the tag: write a plain value."
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise self._refuse(
                    f"Nesting deeper than {MAX_YAML_DEPTH} levels",
                    event.start_mark,
                    "Flatten the structure.",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            raise loader._refuse(
                "A merge key (<<)", key_node.start_mark, "Write the merged keys out in full."
            )
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f'Key "{key}" appears twice (lines {seen[key]} and {key_node.start_mark.line + 1}).',
                fix="Keep one of them.",
                file=loader.name,
                line=key_node.start_mark.line + 1,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

_CSafeDumper: Any = getattr(yaml, "CSafeDumper", None)
"""LibYAML's emitter, when PyYAML was built with it (None: the pure-Python one is used).

PyYAML's own scanner and emitter cost milliseconds per graph of a release: with hundreds of
graphs, `render` spent seconds in them (docs/performance.md). LibYAML does the same work several
times faster; the rules of `_StrictLoader` are kept (`_checked`), and the output is the same
bytes (tests/unit/test_yaml_speed.py holds both paths to it).
"""


class _LibYAMLStrict(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """`_StrictLoader`'s rules on LibYAML's parser: the events are checked first (`_checked`)."""

    name = ""

    def _refuse(self, what: str, mark: Any, fix: str) -> ConfigError:
        """A ConfigError at ``mark`` in the file being read."""
        return _StrictLoader._refuse(self, what, mark, fix)


_LibYAMLStrict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_CStrictLoader: type[_LibYAMLStrict] | None = (
    _LibYAMLStrict if hasattr(yaml, "CSafeLoader") else None
)
"""The strict LibYAML loader (None without LibYAML: `_StrictLoader` reads)."""


def _checked(text: str, name: str) -> _LibYAMLStrict:
    """A LibYAML loader of ``text`` once its events passed `_StrictLoader`'s checks.

    The same refusals as `_StrictLoader.compose_node`, made on the parser's events before any
    node is composed: aliases, anchors, non-standard tags, nesting deeper than `MAX_YAML_DEPTH`.
    """
    events = _LibYAMLStrict(text)
    events.name = name
    try:
        open_ = 0
        while (event := events.get_event()) is not None:
            if isinstance(event, yaml.AliasEvent):
                raise events._refuse(
                    f"An alias (*{event.anchor})", event.start_mark, "Write the value out in full."
                )
            if not isinstance(event, yaml.NodeEvent):
                if isinstance(event, yaml.CollectionEndEvent):
                    open_ -= 1
                continue
            if event.anchor is not None:
                raise events._refuse(
                    f"An anchor (&{event.anchor})",
                    event.start_mark,
                    "Remove the anchor and write each value out in full.",
                )
            tag = getattr(event, "tag", None)
            if tag not in (None, "!") and tag not in _PLAIN_TAGS:
                raise events._refuse(
                    f'The tag "{tag}"', event.start_mark, "Remove the tag: write a plain value."
                )
            if open_ + 1 > MAX_YAML_DEPTH:
                raise events._refuse(
                    f"Nesting deeper than {MAX_YAML_DEPTH} levels",
                    event.start_mark,
                    "Flatten the structure.",
                )
            if isinstance(event, yaml.CollectionStartEvent):
                open_ += 1
    except yaml.YAMLError as exc:
        raise ConfigError(f"Invalid YAML: {exc}", fix="Fix the syntax.", file=name) from exc
    finally:
        events.dispose()
    return _LibYAMLStrict(text)


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (``{}`` when the file is missing or empty)."""
    raw = read_capped(path)
    return {} if raw is None else parse_yaml(raw, path)


def read_capped(path: Path) -> bytes | None:
    """The bytes of ``path`` (None when it is missing), refused over `MAX_YAML_BYTES`."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ConfigError(
            f"The file is {size:,} bytes; environment files may hold at most "
            f"{MAX_YAML_BYTES:,} bytes (1 MiB).",
            fix="Shrink the file: it should hold configuration, not data.",
            file=path,
        )
    with path.open("rb") as f:  # the size may have grown since stat: read at most the cap
        raw = f.read(MAX_YAML_BYTES + 1)
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(
            f"The file is over {MAX_YAML_BYTES:,} bytes (1 MiB), the most an environment file "
            "may hold.",
            fix="Shrink the file: it should hold configuration, not data.",
            file=path,
        )
    return raw


def parse_yaml(raw: bytes, path: Path | str) -> dict[str, Any]:
    """A YAML mapping from the bytes of ``path`` (e.g. a blob of an older commit), read strictly.

    Aliases and duplicate keys are refused as in `read_yaml`; the caller caps the size.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"The file is not UTF-8 text (byte {exc.start}).", fix="Save it as UTF-8.", file=path
        ) from exc
    loader = _StrictLoader(text) if _CStrictLoader is None else _checked(text, str(path))
    loader.name = str(path)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"Invalid YAML: {exc}", fix="Fix the syntax.", file=path) from exc
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"The file holds a {type(data).__name__}, not a mapping.",
            fix="Write key: value pairs at the top level.",
            file=path,
        )
    return data


def dump_yaml(data: Any, header: str = "") -> str:
    """Deterministic YAML: sorted keys, block style, no aliases, a trailing newline."""

    class _NoAliases(_CSafeDumper or yaml.SafeDumper):  # type: ignore[misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None  # embedded YAML/text stays readable
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
        flat = all(isinstance(v, int | float | str | bool) or v is None for v in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat or None)

    _NoAliases.add_representer(str, _text)
    _NoAliases.add_representer(list, _list)

    body = yaml.dump(data, Dumper=_NoAliases, sort_keys=True, default_flow_style=False, width=100)
    return header + body


def line_of(path: Path, loc: tuple[int | str, ...]) -> tuple[int | None, bool]:
    """Line of the deepest key of ``loc`` in ``path``, and whether all of ``loc`` is there."""
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            return None, False
        loader = _StrictLoader(path.read_text())
    except (OSError, UnicodeDecodeError):
        return None, False
    loader.name = str(path)
    try:
        node = loader.get_single_node()
    except (yaml.YAMLError, ConfigError):
        return None, False
    finally:
        loader.dispose()
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(
                (kv for kv in node.value if getattr(kv[0], "value", None) == str(part)), None
            )
            if pair is None:
                return line, False
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line, False
    return line, True


def set_scalar(path: Path, loc: tuple[str, ...], value: str) -> None:
    """Set the scalar at key path ``loc`` of ``path`` in place (its comments and layout kept).

    Raises:
        ConfigError: ``path`` holds no such key (on a line of its own).
    """
    line, whole = line_of(path, loc)
    lines = path.read_text().splitlines(keepends=True)
    key = re.escape(loc[-1])
    text = lines[line - 1].rstrip("\n") if line else ""
    found = re.fullmatch(rf"(\s*{key}:[ \t]*)[^#]*?([ \t]*(#.*)?)", text) if line else None
    if not whole or line is None or found is None:
        raise ConfigError(
            f"{'.'.join(loc)} is not a key on a line of its own in {path.name}.",
            fix=f"Write `{loc[-1]}: null` under {'.'.join(loc[:-1])} in {path}.",
            file=path,
        )
    end = "\n" if lines[line - 1].endswith("\n") else ""
    lines[line - 1] = found.group(1) + value + (found.group(2) or "") + end
    path.write_text("".join(lines))
