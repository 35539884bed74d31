#!/usr/bin/env python3
"""Checks that the modules of host/src import each other without loops.

    scripts/check-module-graph.py            # prints the graph, exits 1 on a loop

Two rules, at every level of the module tree:
1. Between sibling modules (the top-level modules of the crate, the files
   of one directory module), imports form no cycle: data flows one way.
2. A child module never uses an item of its parent (`super::Item` where
   `Item` is not a sibling module): a parent's `mod.rs` only declares and
   re-exports its children, so nothing calls back up.

Imports are read from `use` declarations and from paths written inline
(`crate::a::b`, `super::c`), outside comments and string literals.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "host" / "src"


def strip(text: str) -> str:
    """The code of a Rust file without its unit tests, comments and string
    literals (tests sit at the end of a file, behind `#[cfg(test)]`)."""
    text = text.split("#[cfg(test)]\nmod tests", 1)[0]
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def module_path(file: Path) -> tuple:
    """`host/src/reconcile/cache/kind.rs` -> ('reconcile', 'cache', 'kind')."""
    parts = list(file.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def modules() -> dict:
    return {
        module_path(f): strip(f.read_text())
        for f in sorted(ROOT.rglob("*.rs"))
        if f.name != "main.rs"
    }


def children_of(all_modules, parent: tuple) -> set:
    return {m[len(parent)] for m in all_modules if len(m) > len(parent) and m[: len(parent)] == parent}


def expand_use_groups(code: str):
    """Every path of every `use` declaration, with `{a, b::c}` groups expanded."""
    for declaration in re.findall(r"\buse\s+([^;]+);", code):
        yield from expand(declaration.replace("\n", " ").replace(" ", ""))


def expand(path: str):
    brace = path.find("{")
    if brace < 0:
        yield path
        return
    prefix, inner = path[:brace], path[brace + 1 : path.rfind("}")]
    depth, start = 0, 0
    for i, c in enumerate(inner + ","):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            part = inner[start:i]
            start = i + 1
            if part:
                yield from expand(prefix + part)


def references(module: tuple, code: str):
    """Absolute module paths this module refers to."""
    paths = set(expand_use_groups(code))
    paths |= set(re.findall(r"\b((?:crate|super)(?:::\w+)+)", code))
    for path in paths:
        parts = path.split("::")
        if parts[0] == "crate":
            yield tuple(parts[1:])
        elif parts[0] == "super":
            base = list(module)
            while parts and parts[0] == "super":
                base = base[:-1]
                parts = parts[1:]
            yield tuple(base + parts)


def find_cycle(nodes, edges):
    state = {}
    stack = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def main() -> int:
    all_modules = modules()
    problems = []
    parents = {m[:-1] for m in all_modules if m} | {()}
    for parent in sorted(parents):
        siblings = children_of(all_modules, parent)
        if not siblings:
            continue
        edges = {}
        for module, code in all_modules.items():
            if len(module) <= len(parent) or module[: len(parent)] != parent:
                continue
            here = module[len(parent)]
            for target in references(module, code):
                if target[: len(parent)] != parent or len(target) <= len(parent):
                    continue
                there = target[len(parent)]
                if there == here:
                    continue
                if there in siblings:
                    edges.setdefault(here, set()).add(there)
                elif len(module) == len(parent) + 1 and parent:
                    # `super::Item` of a direct child: an item of the parent.
                    problems.append(
                        f"{'/'.join(module)} uses {'::'.join(target)} from its parent "
                        f"{'/'.join(parent)}: move it to a module of its own"
                    )
        name = "/".join(parent) or "crate"
        print(f"{name}:")
        for here in sorted(siblings):
            print(f"  {here} -> {', '.join(sorted(edges.get(here, ()))) or '-'}")
        cycle = find_cycle(siblings, edges)
        if cycle:
            problems.append(f"import loop in {name}: {' -> '.join(cycle)}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
