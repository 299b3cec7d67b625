"""What every config dataclass shares: JSON round trip, loud unknown keys, help per field.

Subclasses are ``@dataclass`` classes whose fields carry ``metadata={"help": ...}`` and which
define ``validate()`` (returning ``self``). ``from_dict`` refuses unknown keys with the list of
known ones (the nanoGPT habit), so a typo in a saved config never passes silently.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

from uninote.errors import ConfigError

C = TypeVar("C", bound="JsonConfig")

DEVICES = ("auto", "cpu", "cuda")  # the device field of the training configs
RUNTIMES = ("auto", "onnx", "torch", "onnx-int8")  # what runs the frozen backbones (uninote.model.onnx_runtime)


class JsonConfig:
    def validate(self: C) -> C:  # overridden by each config
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}")
        return cls(**d).validate()

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write the resolved config (plus ``extra`` facts such as the corpus) as JSON."""
        Path(path).write_text(json.dumps({**self.to_dict(), **extra}, indent=2, default=str))

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (what the CLI shows)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
