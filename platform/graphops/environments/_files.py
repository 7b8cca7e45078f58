"""Reading and writing environment files strictly, and deterministically.

Duplicate keys, unknown keys and bad values are errors naming the file and the field; output has
sorted keys and a fixed style, so the same data always gives the same bytes. Files are read as
plain YAML only: anchors, aliases, merge keys and tags other than the standard scalar, mapping
and sequence ones are refused while composing (so a "billion laughs" is never expanded), and a
file larger than `MAX_YAML_BYTES` or nested deeper than `MAX_YAML_DEPTH` is refused outright.
A little over 350 lines: the loader and the error locator (file, line, key path) read the same
node tree and are kept together.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from graphops.environments._release import Release
from graphops.environments._schema import EnvironmentConfig
from graphops.errors import ConfigError, did_you_mean

ENVIRONMENTS_DIR = "environments"
BASE = "base"

_Model = TypeVar("_Model", bound=BaseModel)


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


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (``{}`` when the file is missing or empty)."""
    if not path.is_file():
        return {}
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
    return parse_yaml(raw, path)


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
    loader = _StrictLoader(text)
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

    class _NoAliases(yaml.SafeDumper):
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


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose keys are expected at ``loc`` (a pydantic error location), if any."""
    current: object = model
    for part in loc:
        if get_origin(current) is dict:
            current = get_args(current)[1]  # `part` is a key of the mapping: go to its values
        elif isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            current = info.annotation if info else current
        models = [a for a in get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
        if get_origin(current) in (Union, UnionType) and len(models) == 1:
            current = models[0]  # `Model | None`: the model
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _validated(model: type[_Model], data: dict[str, Any], *paths: Path) -> _Model:
    """``data`` as ``model``; the first error (a typo first) as a ConfigError with file and line.

    ``paths`` are the files ``data`` came from, the one edited first: the error names the first
    that holds the whole key path (else the first), at the line of the deepest key it holds.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # An unknown key explains the "required" error of the key it misspells: report it first.
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = tuple(err["loc"])
        field = _key_path(loc)
        hint = ""
        if err["type"] in ("extra_forbidden", "missing"):
            parent = _model_at(model, loc[:-1])
            known = list(parent.model_fields) if parent else []
            typo = did_you_mean(str(loc[-1]), known) if err["type"] == "extra_forbidden" else ""
            hint = typo + (f" Known keys: {', '.join(known)}." if known else "")
        path, line = _locate(loc, paths)
        what = (
            f"Unknown key {field} (value {err.get('input')!r:.60})."
            if err["type"] == "extra_forbidden"
            else f"Got {err.get('input')!r:.80} for {field}: {err['msg']}."
        )
        raise ConfigError(
            what + hint,
            fix=f"Fix {field} in {path.name} (see docs/environments.md).",
            file=path,
            line=line,
        ) from exc


def _key_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as a dotted key path; keys holding dots or spaces are quoted."""
    parts = [
        f"[{p}]" if isinstance(p, int) else (f'"{p}"' if set(str(p)) & set(". ") else str(p))
        for p in loc
    ]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def _locate(loc: tuple[int | str, ...], paths: tuple[Path, ...]) -> tuple[Path, int | None]:
    """The file holding the key path ``loc`` and the line of the deepest of its keys there."""
    found = [(p, *_line_of(p, loc)) for p in paths]
    for path, line, whole in found:
        if whole:
            return path, line
    return found[0][0], found[0][1]


def _line_of(path: Path, loc: tuple[int | str, ...]) -> tuple[int | None, bool]:
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
    line, whole = _line_of(path, loc)
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


def environment_names(repo: Path) -> list[str]:
    """The environments of ``repo``: folders under environments/ holding environment.yaml."""
    root = repo / ENVIRONMENTS_DIR
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.name != BASE and (p / "environment.yaml").is_file()
    )


def load_environment(repo: Path, name: str) -> EnvironmentConfig:
    """``environments/<name>/environment.yaml`` over ``environments/base/environment.yaml``."""
    names = environment_names(repo)
    if name not in names:
        raise ConfigError(
            f'No environment "{name}" under {repo / ENVIRONMENTS_DIR}.{did_you_mean(name, names)}',
            fix=f"Use one of: {', '.join(names) or '(none)'}; an environment is a folder with "
            "environment.yaml.",
        )
    root = repo / ENVIRONMENTS_DIR
    base = read_yaml(root / BASE / "environment.yaml")
    own_path = root / name / "environment.yaml"
    own = read_yaml(own_path)
    if "name" in own or "name" in base:
        raise ConfigError(
            'The key "name" is not set in the file: it is the folder name.',
            fix="Remove name:.",
            file=own_path,
        )
    merged = _validated(
        EnvironmentConfig,
        _merge(base, own) | {"name": name},
        own_path,
        root / BASE / "environment.yaml",
    )
    if merged.policy.upstream is not None and merged.policy.upstream not in names:
        raise ConfigError(
            f'policy.upstream is "{merged.policy.upstream}", which is no environment.'
            f"{did_you_mean(merged.policy.upstream, names)}",
            fix=f"Use one of: {', '.join(n for n in names if n != name)}.",
            file=own_path,
        )
    return merged


def release_path(repo: Path, name: str) -> Path:
    """Where an environment's release.yaml lives."""
    return repo / ENVIRONMENTS_DIR / name / "release.yaml"


def load_release(repo: Path, name: str) -> Release:
    """``environments/<name>/release.yaml`` (empty when the file does not exist yet)."""
    path = release_path(repo, name)
    return _validated(Release, read_yaml(path), path)


RELEASE_HEADER = (
    "# Written by `graphops promote`: the graphs pinned in this environment (reviewed in PRs).\n"
    "# Per-environment `deployments` overrides may be edited by hand; the locks may not.\n"
)


def write_release(repo: Path, name: str, release: Release) -> Path:
    """Write ``release`` deterministically; returns the path."""
    path = release_path(repo, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = release.model_dump(mode="json", exclude_defaults=False)
    path.write_text(dump_yaml(data, RELEASE_HEADER))
    return path
