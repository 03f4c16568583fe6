"""Write the reference of ``probekit.api`` (docs/api-reference.md) from the objects themselves: every name of its
``__all__``, grouped by the module that defines it, with its signature and the first line of its docstring.

    python -m probekit.api_reference > docs/api-reference.md
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Iterator

from probekit import api

#: the modules behind the API, in the order the reference presents them, with a heading each
SECTIONS = {
    "probekit.contracts": "Contracts",
    "probekit.errors": "Errors",
    "probekit.datasets.params": "Dataset parameters shared by many datasets",
    "probekit.datasets.sources": "Sources of text",
    "probekit.datasets.files": "Reading files",
    "probekit.datasets.alignment": "Aligning character labels to tokens",
    "probekit.datasets.windows": "Cutting windows",
    "probekit.datasets.sampling": "Sampling sites and assembling a dataset",
    "probekit.ranking": "Selectors",
    "probekit.probing": "Selectors",
    "probekit.tracing": "Model adapters",
    "probekit.sites": "Model adapters",
    "probekit.hub": "Model adapters",
    "probekit.api": "Version",
}


def reference() -> str:
    """The whole reference as Markdown."""
    lines = ["# `probekit.api` reference", "",
             "Generated from the code by `python -m probekit.api_reference > docs/api-reference.md` (a test keeps it "
             "current). Import every name from `probekit.api`; the modules named here are private. See "
             "[writing-plugins.md](writing-plugins.md) for how the pieces fit.", ""]
    by_section: dict[str, list[str]] = {}
    for name in api.__all__:
        by_section.setdefault(SECTIONS[_home(name)], []).append(name)
    for section in dict.fromkeys(SECTIONS.values()):
        if section not in by_section:
            continue
        lines += [f"## {section}", ""]
        for name in sorted(by_section[section], key=str.lower):
            lines += list(_entry(name))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _home(name: str) -> str:
    """The module that defines an API name (for aliases and constants: the one that imports it into the API)."""
    obj = getattr(api, name)
    module = getattr(obj, "__module__", None)
    if module in SECTIONS and (inspect.isclass(obj) or inspect.isfunction(obj)):
        return module
    for candidate in SECTIONS:
        source = __import__(candidate, fromlist=["_"])
        if candidate != "probekit.api" and getattr(source, name, None) is obj:
            return candidate
    return "probekit.api"


def _entry(name: str) -> Iterator[str]:
    obj = getattr(api, name)
    if inspect.isclass(obj):
        bases = ", ".join(base.__name__ for base in obj.__bases__ if base is not object)
        yield f"- **`{name}`**{f' ({bases})' if bases else ''}: {_summary(obj)}"
        for method_name, method in sorted(vars(obj).items()):
            if (inspect.isfunction(method) and not method_name.startswith("_")
                    and getattr(method, "__isabstractmethod__", False)):
                yield f"  - abstract `{method_name}{_signature(method)}`: {_summary(method)}"
    elif inspect.isfunction(obj):
        yield f"- **`{name}{_signature(obj)}`**: {_summary(obj)}"
    elif typing.get_origin(obj) is typing.Annotated or typing.get_origin(obj) is not None or isinstance(obj, type):
        yield f"- **`{name}`** (type): {_type_text(obj)}"
    else:
        yield f"- **`{name}`** = `{obj!r}`"


def _signature(function: object) -> str:
    text = re.sub(r"(: |-> )'([^']*)'", r"\1\2", str(inspect.signature(function)))  # type: ignore[arg-type]
    return re.sub(r"\b(?:[a-z_]\w*\.)+(?=[A-Za-z_])", "", text)


def _type_text(annotation: object) -> str:
    """A type alias as a reader wants it: the type, its bounds and its description (no object addresses)."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        notes = []
        for extra in extras:
            notes += [repr(item) for item in getattr(extra, "metadata", [])]  # bounds such as Ge(ge=10)
            if getattr(extra, "description", None):
                notes.append(extra.description)
            if getattr(extra, "discriminator", None):
                notes.append(f"chosen by `{extra.discriminator}`")
            if hasattr(extra, "func"):
                notes.append("validated")
        return f"`{_type_text(base).strip('`')}`" + (f" ({'; '.join(notes)})" if notes else "")
    text = re.sub(r"\b(?:[a-z_]\w*\.)+(?=[A-Za-z_])", "", str(annotation))
    return "`" + re.sub(r"<class '(\w+)'>", r"\1", text) + "`"


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    first = doc.split("\n\n")[0].replace("\n", " ").strip()
    return first or "(no docstring)"


if __name__ == "__main__":
    print(reference(), end="")
