"""The spec: its data model, its sections' validation, and reading it from YAML.

- :mod:`.model`: the frozen dataclasses (``Spec``, ``TensorSpec``, ``Reference``, ``Implementation``);
- :mod:`.sections` and :mod:`.implementation`: one constructor per section of the YAML;
- :mod:`.loading`: YAML read once and safely, the line of every key;
- :mod:`.files`: spec files read boundedly and found in folders.
"""

from .files import find_spec_files, has_spec_suffix, looks_like_spec, read_spec_text
from .loading import build_spec, load_spec, parse_yaml
from .model import (
    CONVENTION_ALIASES,
    CONVENTIONS,
    CodeSource,
    Implementation,
    Reference,
    Spec,
    TensorSpec,
    ToleranceSpec,
    grad_names,
)

__all__ = [
    "CONVENTIONS",
    "CONVENTION_ALIASES",
    "CodeSource",
    "Implementation",
    "Reference",
    "Spec",
    "TensorSpec",
    "ToleranceSpec",
    "build_spec",
    "find_spec_files",
    "grad_names",
    "has_spec_suffix",
    "load_spec",
    "looks_like_spec",
    "parse_yaml",
    "read_spec_text",
]
