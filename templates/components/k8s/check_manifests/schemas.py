"""Every rendered object against its schema, as `kubectl apply` (strict field validation, its
default) would: the kinds of Kubernetes' own API groups with kubernetes-validate --strict, the
custom resources with the upstream CRD schemas vendored in ../schemas/<group>/<kind>_<version>.yaml
(each names its source, tag and licence); a kind with neither is refused."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

import jsonschema
import kubernetes_validate

from .manifests import Doc, read_yaml, ref_of

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
# Keywords whose value is one subschema, or a list of them (the others hold data).
SUBSCHEMA = ("items", "additionalProperties", "not")
SUBSCHEMAS = ("allOf", "anyOf", "oneOf")


def crd_schema(doc: Doc) -> Path | None:
    """The vendored schema of a custom resource, if there is one."""
    group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
    path = SCHEMAS / group / f"{str(doc.get('kind', '')).lower()}_{version}.yaml"
    return path if group and path.is_file() else None


def structural(schema: Doc) -> Doc:
    """A CRD's structural schema as JSON Schema that refuses what the API server refuses: a field
    the schema does not declare (unless it keeps unknown fields), null unless `nullable`."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: structural(s) for name, s in out["properties"].items()}
        if "additionalProperties" not in out:
            out["additionalProperties"] = bool(out.get("x-kubernetes-preserve-unknown-fields"))
    for key in SUBSCHEMA:
        if isinstance(out.get(key), dict):
            out[key] = structural(out[key])
    for key in SUBSCHEMAS:
        if key in out:
            out[key] = [structural(s) for s in out[key]]
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def crd_validator(path: Path) -> jsonschema.protocols.Validator:
    schema = structural(read_yaml(path))
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema)
    return validator


def where(path: Iterable[object]) -> str:
    return ".".join(str(part) for part in path) or "(top)"


def validate(doc: Doc, kubernetes_version: str) -> Iterator[str]:
    """Every schema violation of one object."""
    path = crd_schema(doc)
    if path is not None:
        errors = crd_validator(path).iter_errors(doc)
        for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
            yield f"{ref_of(doc)}: {where(error.absolute_path)}: {error.message}"
        return
    try:
        kubernetes_validate.validate(doc, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        yield f"{ref_of(doc)}: {where(error.absolute_path)}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:
        yield f"{ref_of(doc)}: {error.message}, and no CRD schema in {SCHEMAS.name}/"


def check(docs: Iterable[Doc], kubernetes_version: str) -> list[str]:
    return [finding for doc in docs for finding in validate(doc, kubernetes_version)]
