"""Write docs/layers.md from the built-in specs: name, description, dims, formulas.

python scripts/generate_layers_doc.py          # rewrite docs/layers.md
python scripts/generate_layers_doc.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from gradcheck_cli.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "layer_specs"
TARGET = ROOT / "docs" / "layers.md"


def _shape(entries: tuple[str | int, ...]) -> str:
    return "[" + ", ".join(str(e) for e in entries) + "]"


def render() -> str:
    specs = [load_spec(p) for p in sorted(SPECS.glob("*.yaml"))]
    out = [
        "# Built-in layers",
        "",
        "Generated from `layer_specs/` by `scripts/generate_layers_doc.py`; do not edit by hand.",
        "Run one with `gradcheck NAME`, see its derivation with `gradcheck NAME --explain`.",
        "",
        "| layer | dims | description |",
        "|---|---|---|",
    ]
    for spec in specs:
        dims = ", ".join(f"{k}={v}" for k, v in spec.dims.items())
        out.append(f"| [`{spec.name}`](#{spec.name}) | {dims} | {spec.description} |")
    for spec in specs:
        out += ["", f"## {spec.name}", "", spec.description, ""]
        out.append(f"- reference: `{spec.reference.expr or spec.reference.call}`")
        for t in spec.tensors.values():
            grad = "" if t.grad else " (not differentiated)"
            dtype = "" if t.is_float else f" {t.dtype}"
            out.append(f"- {t.kind} `{t.name}`: {_shape(t.shape)}{dtype}{grad}")
        if spec.options:
            out.append("- options: " + ", ".join(f"`{k}` = {v!r}" for k, v in spec.options.items()))
        for key, text in spec.formulas.items():
            out += ["", f"**{key}**", "", "```", text, "```"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is out of date: run python scripts/generate_layers_doc.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
