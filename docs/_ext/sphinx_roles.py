"""A griffe extension for the API reference: Sphinx roles in numpydoc docstrings become links.

xprnn's docstrings follow numpydoc and so cross-reference with Sphinx roles
(``:func:`layer_forward```, ``:class:`~xprnn.RNN```, ``:math:`c_t = f c_{t-1} + i g```).
mkdocstrings does not read roles, so, once the package is loaded, every docstring is rewritten:

- ``:func:``, ``:meth:``, ``:class:``, ``:mod:``, ``:attr:``, ``:exc:``, ``:data:``, ``:obj:``
  whose target resolves (as written, then relative to the enclosing class, module and the
  ``xprnn`` package, as Sphinx does) to a public object that the reference renders become an
  autorefs link ``[`label`][canonical.path]``; any other target (a private helper, the standard
  library) becomes plain code, so strict mode never sees a broken link. ``~`` shortens the label
  to the last name, as in Sphinx.
- ``:math:`...``` becomes ``$...$`` for ``pymdownx.arithmatex``.
- reST literal-block markers go: a line that is only ``::`` is dropped and a paragraph ending in
  ``text::`` ends in ``text:``; the indented block after it is a Markdown code block already.

It also accepts documented keyword arguments that a callable forwards through ``**kw`` (numpydoc
allows documenting them; griffe would report them as absent from the signature).
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(func|meth|class|mod|attr|exc|data|obj|math):`([^`]+)`")
LITERAL_ALONE = re.compile(r"^[ \t]*::[ \t]*\n", re.MULTILINE)
LITERAL_END = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


def _walk(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _lookup(root, path):
    """The object at dotted ``path`` (absolute, starting with the package name), or None."""
    parts = path.split(".")
    if parts[0] != root.name:
        return None
    obj = root
    for part in parts[1:]:
        try:  # a class's inherited members count too (Module.state_dict seen from a model)
            obj = (obj.all_members if obj.is_class else obj.members)[part]
        except (KeyError, AttributeError, griffe.AliasResolutionError):
            return None
    try:
        return obj.final_target if obj.is_alias else obj
    except griffe.AliasResolutionError:
        return None


def _rendered(obj):
    """Whether the API reference shows ``obj``: public names below a rendered module."""
    names = obj.path.split(".")
    module = obj.module.path.split(".")
    return all(not n.startswith("_") for n in names[len(module):]) and (
        obj.is_module or obj.is_public
    )


def _public_home(obj):
    """Where a member of a private base class is shown: under its first public subclass in the
    same module (the reference renders ``_RNNBase.forward`` as ``RNN.forward``), or None."""
    base = obj.parent
    if not (base is not None and base.is_class and base.name.startswith("_")):
        return None
    for cls in base.parent.members.values():
        if not cls.is_alias and cls.is_class and base.name in [str(b) for b in cls.bases]:
            home = f"{cls.path}.{obj.name}"
            return home if cls.is_public else None
    return None


def _resolve(root, context, target):
    """Canonical path of ``target`` seen from ``context`` (Sphinx's search order), or None."""
    scopes = []
    scope = context
    while scope is not None:  # the object itself, its class, its module, ... up to the package
        if not scope.is_function and not scope.is_attribute:
            scopes.append(scope.path)
        scope = scope.parent
    for prefix in ("", *(s + "." for s in scopes)):
        obj = _lookup(root, prefix + target)
        if obj is not None:
            return obj.path if _rendered(obj) else _public_home(obj)
    return None


def _rewrite(root, obj, text):
    def repl(m):
        role, body = m.groups()
        if role == "math":
            return f"${body}$"
        label, _, explicit = body.partition(" <")
        target = explicit[:-1] if explicit.endswith(">") else body
        label = label if explicit else body
        short = target.startswith("~")
        target = target.lstrip("~.")
        if short and not explicit:
            label = target.rsplit(".", 1)[-1]
        path = _resolve(root, obj, target)
        return f"[`{label}`][{path}]" if path else f"`{label}`"

    text = LITERAL_END.sub(":", LITERAL_ALONE.sub("", text))
    return ROLE.sub(repl, text)


def _forwards_keywords(obj):
    try:
        params = obj.parameters if (obj.is_function or obj.is_class) else ()
    except Exception:  # a class without a visible __init__
        return False
    return any(p.kind is griffe.ParameterKind.var_keyword for p in params)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles after the whole package is loaded (so every target is known)."""

    def on_package(self, *, pkg, **kwargs):
        for obj in _walk(pkg):
            doc = obj.docstring
            if doc is None:
                continue
            doc.value = _rewrite(pkg, obj, doc.value)
            if _forwards_keywords(obj):
                doc.parser_options = {**(doc.parser_options or {}), "warn_unknown_params": False}
