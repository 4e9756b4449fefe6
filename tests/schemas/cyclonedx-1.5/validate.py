"""Validate a CycloneDX 1.5 JSON document against the vendored schema: validate.py FILE."""
import json
import os
import sys
import jsonschema

here = os.path.dirname(os.path.abspath(__file__))
def load(name):
    with open(os.path.join(here, name)) as f:
        return json.load(f)
schema = load("bom-1.5.SNAPSHOT.schema.json")
store = {n: load(n) for n in ("spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json")}
with open(sys.argv[1]) as f:
    doc = json.load(f)
try:
    from referencing import Registry, Resource
    registry = Registry().with_resources(
        [(n, Resource.from_contents(s)) for n, s in store.items()]
        + [(s.get("$id", n), Resource.from_contents(s)) for n, s in store.items()]
    )
    validator = jsonschema.Draft7Validator(schema, registry=registry)
except ImportError:
    resolver = jsonschema.RefResolver.from_schema(schema, store=store)
    validator = jsonschema.Draft7Validator(schema, resolver=resolver)
errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
for e in errors:
    print("%s: %s" % ("/".join(map(str, e.path)), e.message))
sys.exit(1 if errors else 0)
