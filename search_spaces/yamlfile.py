"""The one reader of user YAML files (study specs and search spaces), bounded in what it builds.

`yaml.safe_load` builds no arbitrary objects, but a few lines of nested anchors and aliases
(the "billion laughs" document: ``a: &a [x, x]``, ``b: &b [*a, *a]``, ...) describe a value
with 2^k leaves; anything that walks it (validation, copying) grows without bound. Here the
document is composed first (a graph of nodes, each alias shared) and its size *with every
alias expanded* is counted in one pass over the graph before anything is built:

    size(node) = 1 + sum(size(child))       depth(node) = 1 + max(depth(child))

memoized per node, so counting is linear in the file while the bound is on the expansion.
Aliases for ordinary reuse (``<<: *defaults``) stay allowed; recursive ones are refused.

Numbers: ``1e-3`` is a float here as in YAML 1.2 (PyYAML's YAML 1.1 reads it as a string).
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

#: Largest file read (bytes); a spec or space is a page of text.
MAX_BYTES = 1 << 20
#: Most values (mappings, lists and scalars, aliases expanded) a document may describe.
MAX_NODES = 100_000
#: Deepest nesting of mappings and lists, aliases expanded.
MAX_DEPTH = 64


class YamlFileError(ValueError):
    """A user YAML file that cannot be read: the message names the file and the problem."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that checks a document's expanded size before constructing it, and reads
    exponent-form numbers (``1e-3``, ``2E5``) as floats."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node, str(self.name))
        return super().construct_document(node)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, source: str) -> None:
    """YamlFileError when the document, aliases expanded, has more than `MAX_NODES` values,
    nests deeper than `MAX_DEPTH`, or contains itself."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in kids)
            depth[key] = 1 + max((depth[id(c)] for c in kids), default=0)
            if size[key] > MAX_NODES:
                raise YamlFileError(
                    f"{source}: the document expands to more than {MAX_NODES} values through its anchors (&name) and "
                    "aliases (*name) (a 'billion laughs' document?); allowed: at most "
                    f"{MAX_NODES} values with every alias expanded"
                )
            if depth[key] > MAX_DEPTH:
                raise YamlFileError(f"{source}: values nested more than {MAX_DEPTH} levels deep; allowed: at most {MAX_DEPTH}")
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlFileError(f"{source}: an alias (*name) refers to a value that contains it; allowed: no recursive aliases")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)


def parse_yaml(text: str, source: str) -> Any:
    """One YAML document from `text` (`source` names it in errors); YamlFileError if bad."""
    if len(text) > MAX_BYTES:
        raise YamlFileError(f"{source}: {len(text)} characters; allowed: a file of at most {MAX_BYTES} bytes")
    loader = _Loader(text)
    loader.name = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise YamlFileError(f"{source}: not valid YAML ({e})") from None
    except RecursionError:
        raise YamlFileError(f"{source}: values nested too deeply; allowed: at most {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike[str], what: str = "file") -> Any:
    """Read one YAML document from the file at `path` (`what` names it: "spec", "space")."""
    path = os.fspath(path)
    try:
        if os.path.getsize(path) > MAX_BYTES:
            raise YamlFileError(f"{path}: {os.path.getsize(path)} bytes; allowed: a {what} of at most {MAX_BYTES} bytes")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise YamlFileError(f"{what} file {path!r} does not exist") from None
    except IsADirectoryError:
        raise YamlFileError(f"{what} {path!r} is a directory, not a YAML file") from None
    except UnicodeDecodeError as e:
        raise YamlFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise YamlFileError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_yaml(text, path)
