"""Acoustic models behind one contract (`base.AcousticModel`) and a registry of architectures.

Adding an architecture is one module here that defines its config dataclass (with an `architecture`
default naming it) and its model class and registers them with `register()`, plus a preset file
`presets/<name>.yaml` (`architecture: <name>` and its settings); Hydra's `model=` group then offers the
preset (`train.py model=<name> model.<setting>=...`), checkpoints record the architecture, and training,
inference and export build it through `build_model()` without naming it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping

from deepspeech_pytorch.models.base import AcousticModel, AcousticModelConfig, StreamingNotSupported


@dataclass(frozen=True)
class Architecture:
    name: str
    config_class: type
    model_class: Callable[..., AcousticModel]  # (config, num_features, num_classes) -> model


ARCHITECTURES: Dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    """Make an architecture buildable by name (its module calls this on import)."""
    ARCHITECTURES[architecture.name] = architecture
    return architecture


def presets() -> Dict[str, AcousticModelConfig]:
    """Every preset (`presets/<name>.yaml`) by name, as its architecture's config dataclass."""
    from deepspeech_pytorch.configs import model_presets

    return {name: model_config(values) for name, values in model_presets().items()}


def model_config(values: Any, default_architecture: str = "deepspeech2") -> AcousticModelConfig:
    """A model config dataclass from a dataclass, a dict or an OmegaConf node; the `architecture` key picks
    the class (checkpoints of format 1 have none: DeepSpeech2). Raises ValueError naming the setting
    (`model.<field>`) for an unknown architecture, an unknown field, a wrong type or a value that cannot work."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(values, AcousticModelConfig):
        values.check()
        return values
    if OmegaConf.is_config(values):
        values = OmegaConf.to_container(values, resolve=True)
    if not isinstance(values, Mapping):
        raise ValueError(f"model must be a mapping of model settings, not {type(values).__name__}")
    values = dict(values)
    name = values.get("architecture") or default_architecture
    if name not in ARCHITECTURES:
        raise ValueError(f"model.architecture={name!r}: choose from {', '.join(sorted(ARCHITECTURES))}")
    config_class = ARCHITECTURES[name].config_class
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"model.{unknown[0]} is not a {name} setting; it has {', '.join(sorted(names - {'architecture'}))}")
    values["architecture"] = name
    try:  # OmegaConf checks and converts the types as it does for every other setting
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(config_class), values))
    except OmegaConfBaseException as error:
        raise ValueError(f"model.{error.key}: {str(error).splitlines()[0]}") from None
    config.check()
    return config


def preset(name: str) -> AcousticModelConfig:
    """A registered preset's config by name; ValueError naming the choices otherwise."""
    from deepspeech_pytorch.configs import model_presets

    known = model_presets()
    if name not in known:
        raise ValueError(f"model={name!r}: choose from {', '.join(sorted(known))}")
    return model_config(known[name])


def build_model(config: Any, num_features: int, num_classes: int) -> AcousticModel:
    """The model a config describes, with fresh weights."""
    config = model_config(config)
    return ARCHITECTURES[config.architecture].model_class(config, num_features, num_classes)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _discover() -> None:
    """Import every module of this package: each architecture module registers itself on import, so a new
    architecture is one new file here."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name != "base" and not module.ispkg:
            importlib.import_module(f"{__name__}.{module.name}")


_discover()

__all__ = ["ARCHITECTURES", "AcousticModel", "AcousticModelConfig", "Architecture", "StreamingNotSupported",
           "build_model", "count_parameters", "model_config", "presets", "register"]
