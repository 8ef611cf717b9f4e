"""Reading the config file's YAML: duplicate keys refused, libyaml's speed where it is
installed, and every failure a `ConfigError` that says where in the file."""

from __future__ import annotations

import os
from typing import Any

import yaml

from bridge.core.errors import ConfigError


class _UniqueKeys:
    """A SafeLoader mix-in refusing duplicate keys: PyYAML would silently keep the last
    one, which hides a mistake as well as an unknown key would."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            first = seen.setdefault(self.construct_object(key_node), key_node)  # type: ignore[attr-defined]
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"duplicate key {key_node.value!r} (first on line"
                    f" {first.start_mark.line + 1})", key_node.start_mark)
        result: dict[Any, Any] = super().construct_mapping(node, deep)  # type: ignore[misc]
        return result


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    """The pure-Python loader: its error messages are the ones users see."""


# libyaml's scanner and parser where PyYAML has them: the pure-Python scanner took
# ~1 s of the start-up for 5,000 datapoints (0.2 s with libyaml). The constructor (and
# so the duplicate-key check) is the same Python code with either. A file libyaml
# refuses is read again with the pure-Python loader, for its error messages.
_FastLoader: Any = type("_FastLoader", (_UniqueKeys, yaml.CSafeLoader), {}) \
    if yaml.__with_libyaml__ else None


def _load(text: str) -> Any:
    if _FastLoader is not None:
        try:
            return yaml.load(text, Loader=_FastLoader)
        except yaml.YAMLError:
            pass  # said again below, in the words of the pure-Python loader
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config file's top-level mapping; ConfigError for anything else."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as file:
            text = file.read()
        data = _load(text)
    except FileNotFoundError:
        raise ConfigError([("", f"config file {name} not found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([("", f"{name} is not UTF-8 text: {exc.reason}")]) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read config file {name}: {exc.strerror}")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigError([("", f"{where}: invalid YAML: {exc.problem}{context}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"{name}: invalid YAML: {exc}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("", f"{name}: the top level must be a mapping of sections"
                                f" (mqtt, devices, ...), not a {type(data).__name__}")])
    return data
