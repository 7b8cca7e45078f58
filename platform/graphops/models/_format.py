"""The model-format interface: how a registered model's files become a callable model.

Each format is one module of `graphops.models` holding one `ModelFormat` subclass, registered in
`FORMATS` by its name. Which format a registered version has is read from its files: graphops'
own layout (``graphops-model.json``) or the ``MLmodel`` file MLflow's flavors write
(``mlflow.onnx.log_model``, ``mlflow.xgboost.log_model``...). Loading happens only after the
registry verified the files' digest (`graphops.registry`), and never by unpickling code unless a
platform team allowed it for that model (``models.pickle_allowed`` in ``environment.yaml``).
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import yaml

from graphops.errors import RegistryError, Where
from graphops.graph import ModelNode

MLMODEL_FILE = "MLmodel"
"""The file MLflow's flavors write at a model's root: its flavors and how each loads."""
PICKLE_OPT_IN = "models.pickle_allowed"
"""The `environment.yaml` field that lists the registered models allowed to load by unpickling."""


class Model(Protocol):
    """A loaded model as a model node receives it: numpy columns in, one numpy array out."""

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """Run the model on a batch (one array per input, rows first)."""
        ...


@dataclass(frozen=True)
class Artifacts:
    """A registered version's files, downloaded and digest-verified, as a format sees them.

    Attributes:
        directory: The model's root: where ``MLmodel`` or ``graphops-model.json`` lies.
        uri: ``models:/name/N``, named in errors.
        flavors: The ``flavors`` section of ``MLmodel`` (empty without one).
    """

    directory: Path
    uri: str
    flavors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path, uri: str) -> Artifacts:
        """The artifacts under ``directory``; its ``MLmodel`` read when there is one."""
        root = _model_root(directory)
        mlmodel = root / MLMODEL_FILE
        flavors: dict[str, Any] = {}
        if mlmodel.is_file():
            loaded = yaml.safe_load(mlmodel.read_text()) or {}
            flavors = dict(loaded.get("flavors") or {})
        return cls(directory=root, uri=uri, flavors=flavors)

    @property
    def name(self) -> str:
        """The registered model's name (from ``uri``)."""
        return self.uri.removeprefix("models:/").split("/")[0].split("@")[0]


class ModelFormat(ABC):
    """One model format: which registered files it reads, and how it loads them.

    Subclasses set the class attributes and implement `matches` and `load`; `pickled` names
    what would be unpickled, for formats whose flavor can also save that way.
    """

    name: ClassVar[str]
    """The format's key in `FORMATS` (also shown by `graphops plan` and validate)."""
    flavor: ClassVar[str | None] = None
    """The MLflow flavor (key of ``MLmodel``'s flavors) this format reads; None: graphops' own."""
    extra: ClassVar[str | None] = None
    """The graphops extra that installs its runtime (``pip install graphops[extra]``); None: core."""
    modules: ClassVar[tuple[str, ...]] = ()
    """Python modules the runtime needs; missing ones are reported with `extra`."""

    def matches(self, artifacts: Artifacts) -> bool:
        """Whether ``artifacts`` are in this format (default: its flavor is in ``MLmodel``)."""
        return self.flavor is not None and self.flavor in artifacts.flavors

    def pickled(self, artifacts: Artifacts) -> str | None:
        """What loading would unpickle (a file or a serialization format), None when nothing."""
        return None

    def normalise(self, directory: Path) -> None:  # noqa: B027  (optional hook, no-op default)
        """Make a fresh save in ``directory`` byte-identical to earlier saves of the same model.

        `Registry.register_flavor` calls it, so re-registering reuses the version. Default: as is.
        """

    @abstractmethod
    def load(self, node: ModelNode, artifacts: Artifacts, *, gpu: bool) -> Model:
        """Build the callable model from verified ``artifacts`` (on a GPU when ``gpu``)."""

    def require(self, where: Where) -> None:
        """Refuse with the extra to install when one of `modules` is missing."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            install = f'"graphops[{self.extra}]"' if self.extra else " ".join(missing)
            raise RegistryError(
                f"The {self.name} model format needs {', '.join(missing)}, which is not installed "
                "where this model loads.",
                fix=f"Install it there (pip install {install}); for a cluster, in its image.",
                **where,
            )


FORMATS: dict[str, ModelFormat] = {}
"""Every model format graphops reads, by name, in the order formats are tried."""

_F = TypeVar("_F", bound=type[ModelFormat])


def register_format(cls: _F) -> _F:
    """Class decorator: add one instance of a `ModelFormat` subclass to `FORMATS`."""
    FORMATS[cls.name] = cls()
    return cls


def detect(artifacts: Artifacts, where: Where, *, pickle_allowed: bool = False) -> ModelFormat:
    """The format of ``artifacts``; refuses unknown layouts and pickled models not allowed.

    A pickled model a platform team allowed loads through its format (a scikit-learn model
    answers the same, skops or cloudpickle), or through `pyfunc` (MLflow's own loader) when no
    format of graphops reads its flavor.

    Raises:
        RegistryError: No format reads the files (names the files and flavors found), or the
            model would load by unpickling and no platform team allowed it (names the model,
            the flavor and the opt-in).
    """
    for fmt in FORMATS.values():
        if not fmt.matches(artifacts):
            continue
        pickled = fmt.pickled(artifacts)
        if pickled is not None and not pickle_allowed:
            raise pickle_refused(artifacts, fmt.flavor or fmt.name, pickled, where)
        return fmt  # an allowed pickle loads by its own format: the same answers as its safe form
    flavors = [f for f in artifacts.flavors if f != "python_function"] or ["python_function"]
    if artifacts.flavors:
        if not pickle_allowed:
            conf = artifacts.flavors[flavors[0]]
            saved = conf.get("pickled_model") or conf.get("model_data") or conf.get("data")
            what = f"{saved or 'its files'}"
            if conf.get("serialization_format"):
                what += f" ({conf['serialization_format']})"
            raise pickle_refused(artifacts, flavors[0], what, where)
        return FORMATS["pyfunc"]
    found = ", ".join(sorted(p.name for p in artifacts.directory.iterdir())) or "nothing"
    raise RegistryError(
        f"{artifacts.uri} is in no model format graphops reads (its files: {found}).",
        fix="Log it with an MLflow flavor graphops reads (onnx, xgboost, lightgbm, sklearn with "
        "skops, transformers) or register it with graphops.registry.Registry.register_torch.",
        **where,
    )


def pickle_refused(artifacts: Artifacts, flavor: str, what: str, where: Where) -> RegistryError:
    """The error for a model that would load by unpickling: names model, flavor and opt-in."""
    return RegistryError(
        f'{artifacts.uri} was logged with MLflow\'s "{flavor}" flavor, which loads it by '
        f"unpickling {what}: unpickling runs whatever code the file holds, so graphops refuses it.",
        fix=f"Log the model in a safe format (mlflow.sklearn with serialization_format='skops', "
        f"mlflow.onnx, mlflow.xgboost, a LightGBM Booster), or have your platform team allow "
        f'this model: add "{artifacts.name}" to {PICKLE_OPT_IN} in environments/base/'
        "environment.yaml (validate reports every model loaded that way).",
        **where,
    )


def load_model(
    node: ModelNode, directory: Path, uri: str, *, pickle_allowed: bool = False
) -> Model:
    """Load ``node``'s model from verified files in ``directory``, whatever its format.

    Args:
        node: The model node (its resources decide CPU or GPU; named in errors).
        directory: The downloaded, digest-verified artifacts of the version.
        uri: ``models:/name/N`` of the version (named in errors).
        pickle_allowed: A platform team allowed this model to load by unpickling.

    Raises:
        RegistryError: Unknown or pickled format, missing runtime, or files the format rejects.
    """
    where: Where = {"node": node.name, "file": node.file, "line": node.line}
    artifacts = Artifacts.read(directory, uri)
    fmt = detect(artifacts, where, pickle_allowed=pickle_allowed)
    fmt.require(where)
    return fmt.load(node, artifacts, gpu=node.resources.needs_gpu)


def format_of(directory: Path, uri: str) -> str:
    """The name of the format of the files in ``directory`` (`detect`'s, pickled ones allowed)."""
    return detect(Artifacts.read(directory, uri), {}, pickle_allowed=True).name


def _model_root(directory: Path) -> Path:
    """Where the model's files start: ``directory``, or its one subfolder holding an MLmodel."""
    if (directory / MLMODEL_FILE).is_file():
        return directory
    children = [p for p in directory.iterdir() if p.is_dir()] if directory.is_dir() else []
    if len(children) == 1 and (children[0] / MLMODEL_FILE).is_file():
        return children[0]
    return directory
