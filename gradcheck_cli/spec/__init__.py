"""The spec: its data model, its sections' validation, and reading it from YAML.

- :mod:`.model`: the frozen dataclasses (``Spec``, ``TensorSpec``, ``Reference``, ``Implementation``);
- :mod:`.sections` and :mod:`.implementation`: one constructor per section of the YAML;
- :mod:`.loading`: reading a file once and safely, finding spec files in folders.
"""

from .loading import build_spec, find_spec_files, load_spec, looks_like_spec, parse_yaml
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
    "load_spec",
    "looks_like_spec",
    "parse_yaml",
]
