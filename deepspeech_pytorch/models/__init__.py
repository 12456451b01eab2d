"""Acoustic models behind one contract (`base.AcousticModel`) and a registry of architectures.

Adding an architecture is one module here that defines its config dataclass (with an `architecture`
default naming it), its model class and its presets, and registers them with `register()`; Hydra's
`model=` group then offers the presets, checkpoints record the architecture, and training, inference
and export build it through `build_model()` without naming it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping

from deepspeech_pytorch.models.base import AcousticModel, AcousticModelConfig, StreamingNotSupported


@dataclass(frozen=True)
class Architecture:
    name: str
    config_class: type
    model_class: Callable[..., AcousticModel]  # (config, num_features, num_classes) -> model
    presets: Mapping[str, AcousticModelConfig] = field(default_factory=dict)


ARCHITECTURES: Dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    for name in architecture.presets:
        owner = preset_owner(name)
        if owner is not None and owner != architecture.name:
            raise ValueError(f"preset {name!r} is already registered by {owner!r}")
    ARCHITECTURES[architecture.name] = architecture
    return architecture


def preset_owner(preset: str):
    for architecture in ARCHITECTURES.values():
        if preset in architecture.presets:
            return architecture.name
    return None


def presets() -> Dict[str, AcousticModelConfig]:
    """Every registered preset by name, over all architectures."""
    return {name: config for architecture in ARCHITECTURES.values() for name, config in architecture.presets.items()}


def model_config(values: Any, default_architecture: str = "deepspeech2") -> AcousticModelConfig:
    """A model config dataclass from a dataclass, a dict or an OmegaConf node; the `architecture` key picks
    the class (checkpoints of format 1 have none: DeepSpeech2). Raises ValueError naming unknown fields."""
    if isinstance(values, AcousticModelConfig):
        return values
    try:
        from omegaconf import OmegaConf
        if OmegaConf.is_config(values):
            values = OmegaConf.to_container(values, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    values = dict(values)
    name = values.get("architecture") or default_architecture
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model architecture {name!r}; choose from {sorted(ARCHITECTURES)}")
    config_class = ARCHITECTURES[name].config_class
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {name} model settings {unknown}; it has {sorted(names - {'architecture'})}")
    values["architecture"] = name
    return config_class(**values)


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
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


_discover()

__all__ = ["ARCHITECTURES", "AcousticModel", "AcousticModelConfig", "Architecture", "StreamingNotSupported",
           "build_model", "count_parameters", "model_config", "presets", "register"]
