"""Reading and writing environment files strictly, and deterministically.

Duplicate keys, unknown keys and bad values are errors naming the file, the field and its line;
`environment.yaml` is merged over `base/`. The YAML itself is read and written by
`graphops.environments._yaml` (plain YAML only, size and depth capped, deterministic output).
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from graphops.environments._release import Release
from graphops.environments._schema import EnvironmentConfig, ModelsConfig
from graphops.environments._yaml import (
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    dump_yaml,
    line_of,
    parse_yaml,
    read_capped,
    read_yaml,
    set_scalar,
)
from graphops.errors import ConfigError, did_you_mean

ENVIRONMENTS_DIR = "environments"
BASE = "base"

_Model = TypeVar("_Model", bound=BaseModel)


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
    found = [(p, *line_of(p, loc)) for p in paths]
    for path, line, whole in found:
        if whole:
            return path, line
    return found[0][0], found[0][1]


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


def pickle_allowed(repo: Path) -> tuple[str, ...]:
    """``models.pickle_allowed`` of ``environments/base/environment.yaml`` (none without one).

    What validation and the CLI's own runs allow: the grant every environment inherits. An
    environment can extend it in its own file (render reads the merged config).
    """
    path = repo / ENVIRONMENTS_DIR / BASE / "environment.yaml"
    if not path.is_file():
        return ()
    models = read_yaml(path).get("models") or {}
    config = _validated(ModelsConfig, models if isinstance(models, dict) else {}, path)
    return config.pickle_allowed


def release_path(repo: Path, name: str) -> Path:
    """Where an environment's release.yaml lives."""
    return repo / ENVIRONMENTS_DIR / name / "release.yaml"


def load_release(repo: Path, name: str) -> Release:
    """``environments/<name>/release.yaml`` (empty when the file does not exist yet).

    Read once per content: the same bytes at the same path give the same (frozen) `Release`
    without parsing again. A promotion reads the releases of two environments nine times; with
    hundreds of graphs each read was a third of a second (docs/performance.md).
    """
    path = release_path(repo, name)
    raw = read_capped(path)
    return Release() if raw is None else _release(str(path), raw)


@functools.lru_cache(maxsize=16)
def _release(path: str, raw: bytes) -> Release:
    """The `Release` these bytes of ``path`` hold (cached by path and content)."""
    return _validated(Release, parse_yaml(raw, Path(path)), Path(path))


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


# `_yaml`'s names stay importable from here, where they were first.
__all__ = [
    "BASE",
    "ENVIRONMENTS_DIR",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "RELEASE_HEADER",
    "dump_yaml",
    "environment_names",
    "load_environment",
    "load_release",
    "parse_yaml",
    "read_yaml",
    "release_path",
    "set_scalar",
    "write_release",
]
