"""The Terraform in infra/terraform deploys what the code needs, named as the code names it.

No terraform binary runs here: every .tf file is parsed with python-hcl2 and checked against
the code (skypanda.runtime.deployment, skypanda.adapters.gcp.topology) and
infra/firestore.indexes.json:

- infra/terraform/skypanda.json is what the code generates now;
- every resource the manifest or the index file names is one `for_each` over it (functions,
  topics, subscriptions, secrets, indexes, field overrides, TTL policies): the instance keys are
  worked out from the `for_each` expression and compared with the code's names, and no second
  resource of those types types a name by hand;
- the front door's URL map sends the manifest's dispatch_paths to dispatch, the rest to submit;
- the sizes, the Pub/Sub delivery settings, the pilot container and the tick topic match the
  code's constants;
- every variable has a description and a type, every `var.x` used is declared (and used);
- every checkov skip gives its reason.

Each checker returns the problems it finds; the tests named `*_notices_*` feed it a broken copy
(of the Terraform or of the manifest) to show it can fail.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest

from skypanda.adapters.gcp import cloudrun_jobs, cloudrun_launcher, cloudrun_limits, topology
from skypanda.domain.events import EventType
from skypanda.runtime import deployment

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "infra" / "terraform"
MANIFEST_FILE = TF_DIR / "skypanda.json"
INDEXES_FILE = ROOT / "infra" / "firestore.indexes.json"

# -- reading the Terraform ----------------------------------------------------------------------


def _unquote(value: str) -> str:
    """python-hcl2 5+ keeps a string literal's quotes; 4 does not."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _plain(node: Any) -> Any:
    """The parse tree without python-hcl2's markers (`__is_block__`, comments) or quotes."""
    if isinstance(node, dict):
        return {_unquote(k): _plain(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


def _closing(text: str, start: int) -> int:
    """The index of the `}` closing the `{` at `start` (braces in strings are balanced here)."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return -1


def expr(value: Any) -> str:
    """An attribute's expression without blanks, and without `${ }` when it is one expression
    (not a template such as `${a}-${b}`), for comparing."""
    text = str(value)
    if text.startswith("${") and _closing(text, 1) == len(text) - 1:
        text = text[2:-1]
    return re.sub(r"\s+", "", text)


@functools.cache
def _tree(text: str) -> dict[str, Any]:
    """One .tf file's parse tree, plain (parsed once per distinct text: parsing is slow)."""
    tree: dict[str, Any] = _plain(hcl2.load(io.StringIO(text)))
    return tree


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


@dataclass
class Terraform:
    """A Terraform module's declarations, parsed."""

    resources: dict[tuple[str, str], dict[str, Any]]
    variables: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    texts: dict[str, str]

    @classmethod
    def load(cls, directory: Path = TF_DIR) -> Terraform:
        return cls.parse({p.name: p.read_text() for p in sorted(directory.glob("*.tf"))})

    @classmethod
    def parse(cls, texts: dict[str, str]) -> Terraform:
        resources: dict[tuple[str, str], dict[str, Any]] = {}
        variables: dict[str, dict[str, Any]] = {}
        local_values: dict[str, Any] = {}
        for text in texts.values():
            tree = _tree(text)
            for block in tree.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert (rtype, name) not in resources, f"{rtype}.{name} declared twice"
                        resources[(rtype, name)] = body
            for block in tree.get("variable", []):
                variables.update(block)
            for block in tree.get("locals", []):
                local_values.update(block)
        return cls(resources, variables, local_values, texts)

    def edited(self, file: str, old: str, new: str) -> Terraform:
        """A copy with `old` replaced by `new` in `file` (which must contain it)."""
        assert old in self.texts[file], f"{file} has no {old!r}"
        return Terraform.parse({**self.texts, file: self.texts[file].replace(old, new)})

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def strings(self) -> Iterator[str]:
        """Every string and expression of the module (comments excluded)."""
        for body in self.resources.values():
            yield from _strings(body)
        yield from _strings(self.locals)
        for text in self.texts.values():
            for kind in ("output", "data", "provider", "module"):
                yield from _strings(_tree(text).get(kind, []))


def block(body: dict[str, Any], *path: str) -> dict[str, Any]:
    """A nested block (`block(fn, "service_config")`); {} when it is absent."""
    for name in path:
        found = body.get(name) or [{}]
        body = found[0] if isinstance(found, list) else found
    return body


def dynamic(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A `dynamic "name"` block: its for_each and content; {} when absent."""
    for entry in body.get("dynamic", []):
        if name in entry:
            found: dict[str, Any] = entry[name]
            return found
    return {}


# -- what a for_each iterates over --------------------------------------------------------------

_LOCAL = re.compile(r"^local\.(\w+)$")
_MANIFEST_LIST = re.compile(
    r"^\{for(\w+)inlocal\.manifest\.(\w+):\1\.(\w+)=>\1(?:\.\w+)?(?:if\1\.(\w+)!=null)?\}$"
)
_MANIFEST_SET = re.compile(r"^toset\(local\.manifest\.(\w+)\)$")
_MANIFEST_MAP = re.compile(r"^local\.manifest\.(\w+)$")


def manifest_keys(tf: Terraform, for_each: Any, manifest: dict[str, Any]) -> set[str] | None:
    """The instance keys of `for_each` when it iterates over a part of the manifest (directly,
    or through a local), in the few forms this Terraform uses; None for anything else (a list
    typed by hand, a local over something else)."""
    text = expr(for_each)
    if m := _LOCAL.match(text):
        if m.group(1) not in tf.locals:
            return None
        text = expr(tf.locals[m.group(1)])
    if m := _MANIFEST_LIST.match(text):
        part, key, non_null = m.group(2), m.group(3), m.group(4)
        items = manifest.get(part, [])
        return {i[key] for i in items if non_null is None or i.get(non_null) is not None}
    if m := _MANIFEST_SET.match(text):
        return set(manifest.get(m.group(1), []))
    if (m := _MANIFEST_MAP.match(text)) and isinstance(manifest.get(m.group(1)), dict):
        return set(manifest[m.group(1)])
    return None


# -- the checkers -------------------------------------------------------------------------------

TRIGGERS = {"http", "pubsub", "firestore"}
"""The function triggers functions.tf knows how to wire."""

# Resource types whose instances the manifest or the index file names: each is declared once
# (or as the listed resources), with a for_each over that file.
OWNED = {
    "google_cloudfunctions2_function": {"fn"},
    "google_pubsub_topic": {"topic"},
    "google_pubsub_subscription": {"sub"},
    "google_secret_manager_secret": {"secret"},
    "google_secret_manager_secret_version": {"secret"},
    "google_firestore_index": {"composite"},
    "google_firestore_field": {"override", "ttl"},
}

ALLOWED_TYPES = {
    # APIs, Firestore
    "google_project_service", "google_firestore_database", "google_firestore_index",
    "google_firestore_field",
    # Pub/Sub and the tick
    "google_pubsub_topic", "google_pubsub_subscription", "google_pubsub_topic_iam_member",
    "google_pubsub_subscription_iam_member", "google_cloud_scheduler_job", "google_pubsub_schema",
    # functions, their source and who may call them
    "google_cloudfunctions2_function", "google_storage_bucket_object",
    "google_cloud_run_service_iam_member",
    # buckets, secrets, service accounts and roles
    "google_storage_bucket", "google_storage_bucket_iam_member", "google_secret_manager_secret",
    "google_storage_notification",
    "google_secret_manager_secret_version", "google_secret_manager_secret_iam_member",
    "random_password", "google_service_account", "google_service_account_iam_member",
    "google_project_iam_member", "google_project_iam_custom_role",
    # pilots: Cloud Run, GKE
    "google_cloud_run_v2_job", "google_container_cluster", "google_compute_router",
    "google_compute_router_nat", "kubernetes_namespace_v1", "kubernetes_service_account_v1",
    "kubernetes_role_v1", "kubernetes_role_binding_v1",
    # the front door
    "google_compute_global_address", "google_compute_region_network_endpoint_group",
    "google_compute_backend_service", "google_compute_url_map",
    "google_compute_managed_ssl_certificate", "google_compute_ssl_policy",
    "google_compute_target_https_proxy", "google_compute_target_http_proxy",
    "google_compute_global_forwarding_rule",
    # Cloud Monitoring: log-based metrics, the dashboard, alerts (tests/infra/test_monitoring.py)
    "google_logging_metric", "google_monitoring_dashboard", "google_monitoring_alert_policy",
}  # fmt: skip
"""Every resource type the deployment is made of. A new one is a decision: add it here."""


def function_problems(tf: Terraform, manifest: dict[str, Any]) -> list[str]:
    """Every manifest function is an instance of one google_cloudfunctions2_function, entry point
    its name, sized and triggered as the manifest says."""
    fns = tf.of_type("google_cloudfunctions2_function")
    if set(fns) != {"fn"}:
        return [f"want one google_cloudfunctions2_function `fn`, found {sorted(fns)}"]
    fn = fns["fn"]
    problems = []
    keys = manifest_keys(tf, fn.get("for_each"), manifest)
    wanted = {f["name"] for f in manifest["functions"]}
    if keys != wanted:
        problems.append(f"for_each {fn.get('for_each')!r} gives {keys}, the manifest {wanted}")
    if expr(block(fn, "build_config").get("entry_point")) != "each.key":
        problems.append("build_config.entry_point is not each.key (the manifest's name)")
    if "each.key" not in expr(fn.get("name")) or "local.prefix" not in expr(fn.get("name")):
        problems.append("the function's name is not the prefix and each.key")
    service = block(fn, "service_config")
    sizes = {
        "available_memory": "memory", "available_cpu": "cpu", "timeout_seconds": "timeout_s",
        "max_instance_count": "max_instances", "max_instance_request_concurrency": "concurrency",
    }  # fmt: skip
    for attribute, field in sizes.items():
        if expr(service.get(attribute)) != f"each.value.{field}":
            problems.append(f"service_config.{attribute} is not the manifest's {field}")
    secrets = dynamic(service, "secret_environment_variables")
    if "each.value.secrets" not in expr(secrets.get("for_each")):
        problems.append("secret_environment_variables do not iterate over each.value.secrets")
    if "each.value.env" not in expr(service.get("environment_variables")):
        problems.append("environment_variables do not iterate over each.value.env")
    problems += [
        f"function {f['name']}: trigger {f['trigger']!r} is not wired by functions.tf"
        for f in manifest["functions"]
        if f["trigger"] not in TRIGGERS
    ]
    return problems


def single_instance_problems(tf: Terraform, manifest: dict[str, Any]) -> list[str]:
    """The scaler and the sweep end with at most one instance: one decision at a time."""
    fn = tf.of_type("google_cloudfunctions2_function").get("fn", {})
    problems = []
    if expr(block(fn, "service_config").get("max_instance_count")) != "each.value.max_instances":
        problems.append("max_instance_count does not come from the manifest")
    sizes = {f["name"]: f["max_instances"] for f in manifest["functions"]}
    problems += [
        f"{name} may run {sizes.get(name)} instances, not 1"
        for name in ("scale", "sweep")
        if sizes.get(name) != 1
    ]
    return problems


def env_problems(tf: Terraform, manifest: dict[str, Any]) -> list[str]:
    """Every environment variable a manifest function reads has a value in local.env_values,
    and every secret it reads is a manifest secret."""
    values = tf.locals.get("env_values", {})
    problems = [
        f"function {f['name']} reads {name}, which local.env_values does not set"
        for f in manifest["functions"]
        for name in f["env"]
        if name not in values
    ]
    problems += [
        f"function {f['name']} reads secret {name}, not among the manifest's secrets"
        for f in manifest["functions"]
        for name in f["secrets"]
        if name not in manifest["secrets"]
    ]
    return problems


def pubsub_problems(tf: Terraform, manifest: dict[str, Any]) -> list[str]:
    """Topics and subscriptions iterate over the manifest; subscriptions push to their function
    and dead-letter as the manifest says."""
    problems = []
    topic = tf.of_type("google_pubsub_topic").get("topic", {})
    if manifest_keys(tf, topic.get("for_each"), manifest) != set(manifest["topics"]):
        problems.append("google_pubsub_topic.topic does not iterate over the manifest's topics")
    sub = tf.of_type("google_pubsub_subscription").get("sub", {})
    names = {s["name"] for s in manifest["subscriptions"]}
    if manifest_keys(tf, sub.get("for_each"), manifest) != names:
        problems.append("google_pubsub_subscription.sub does not iterate over the manifest's")
    push = dynamic(sub, "push_config")
    if "each.value.function" not in expr(push.get("for_each")):
        problems.append("push_config does not follow each subscription's function")
    endpoint = expr(block(push, "content").get("push_endpoint"))
    if not endpoint.startswith("google_cloudfunctions2_function.fn[push_config.value]"):
        problems.append(f"push_endpoint {endpoint!r} is not the function's URI")
    if "each.value.dead_letter" not in expr(dynamic(sub, "dead_letter_policy").get("for_each")):
        problems.append("dead_letter_policy does not follow each subscription's dead_letter")
    if topology.dead_letter_topic_name() != manifest["dead_letter_topic"]:
        problems.append("the manifest's dead-letter topic is not the code's")
    return problems


def owned_problems(tf: Terraform) -> list[str]:
    """No resource type the code does not know about, and no second resource of a type the
    manifest owns (a topic typed by hand)."""
    problems = [
        f"{rtype}.{name}: resource type not in ALLOWED_TYPES"
        for rtype, name in tf.resources
        if rtype not in ALLOWED_TYPES
    ]
    for rtype, names in OWNED.items():
        found = set(tf.of_type(rtype))
        if found != names:
            problems.append(f"{rtype}: want {sorted(names)}, found {sorted(found)}")
        problems += [
            f"{rtype}.{name} has no for_each: its names are typed by hand"
            for name in found
            if "for_each" not in tf.resources[(rtype, name)]
        ]
    return problems


def _index_key(index: dict[str, Any]) -> str:
    """What local.composite_indexes keys an index by (main.tf)."""
    fields = ",".join(
        f"{f['fieldPath']}:{f.get('order', f.get('arrayConfig'))}" for f in index["fields"]
    )
    return f"{index['collectionGroup']}:{fields}"


def firestore_problems(
    tf: Terraform, manifest: dict[str, Any], indexes: dict[str, Any]
) -> list[str]:
    """Composite indexes and field overrides iterate over the index file, TTL policies over the
    manifest's collections; the index file holds only what the resources can express."""
    problems = []
    composite = tf.of_type("google_firestore_index").get("composite", {})
    source = expr(tf.locals.get(expr(composite.get("for_each")).removeprefix("local."), ""))
    if "local.indexes.indexes" not in source:
        problems.append("google_firestore_index does not iterate over the index file")
    keys = [_index_key(i) for i in indexes["indexes"]]
    problems += [
        f"index {k} is listed twice" for k in sorted({k for k in keys if keys.count(k) > 1})
    ]
    problems += [
        f"index {_index_key(i)}: field {f['fieldPath']} is neither ordered nor an array"
        for i in indexes["indexes"]
        for f in i["fields"]
        if set(f) - {"fieldPath"} not in ({"order"}, {"arrayConfig"})
    ]
    fields = tf.of_type("google_firestore_field")
    override = expr(fields.get("override", {}).get("for_each")).removeprefix("local.")
    source = expr(tf.locals.get(override, ""))
    if "local.indexes.fieldOverrides" not in source:
        problems.append("google_firestore_field.override does not iterate over fieldOverrides")
    ttl = {c["name"] for c in manifest["collections"] if c["ttl_field"]}
    if manifest_keys(tf, fields.get("ttl", {}).get("for_each"), manifest) != ttl:
        problems.append("google_firestore_field.ttl does not iterate over the TTL collections")
    overridden = {(o["collectionGroup"], o["fieldPath"]) for o in indexes.get("fieldOverrides", [])}
    problems += [
        f"{c['name']}.{c['ttl_field']}: both a field override and a TTL field (one resource each)"
        for c in manifest["collections"]
        if (c["name"], c["ttl_field"]) in overridden
    ]
    problems += [
        f"override {o['collectionGroup']}.{o['fieldPath']} sets ttl: TTLs come from the manifest"
        for o in indexes.get("fieldOverrides", [])
        if "ttl" in o
    ]
    return problems


def secret_problems(tf: Terraform, manifest: dict[str, Any]) -> list[str]:
    """One secret, one version and one accessor grant per manifest secret."""
    problems = []
    for rtype, name in [
        ("google_secret_manager_secret", "secret"),
        ("google_secret_manager_secret_version", "secret"),
        ("google_secret_manager_secret_iam_member", "functions_accessor"),
        ("random_password", "secret"),
    ]:
        body = tf.resources.get((rtype, name), {})
        if manifest_keys(tf, body.get("for_each"), manifest) != set(manifest["secrets"]):
            problems.append(f"{rtype}.{name} does not iterate over the manifest's secrets")
    secret = tf.resources.get(("google_secret_manager_secret", "secret"), {})
    if expr(secret.get("secret_id")) != "${local.prefix}${each.value}":
        problems.append("a secret's id is not the prefix and the manifest's name")
    return problems


def frontdoor_problems(tf: Terraform, manifest: dict[str, Any]) -> list[str]:
    """The URL map sends each dispatch_path (path_template_match) to the pilots' function and
    the rest to the users'; those are the functions the manifest's routes name."""
    maps = tf.of_type("google_compute_url_map")
    matcher = block(maps.get("frontdoor", {}), "path_matcher")
    rules = dynamic(matcher, "route_rules")
    problems = []
    if expr(rules.get("for_each")) != "local.manifest.dispatch_paths":
        problems.append(
            "the URL map's route_rules do not iterate over the manifest's dispatch_paths"
        )
    content = block(rules, "content")
    if expr(block(content, "match_rules").get("path_template_match")) != "route_rules.value":
        problems.append("a route rule does not match its dispatch path with path_template_match")
    if "local.pilot_function" not in expr(content.get("service")):
        problems.append("dispatch paths do not go to local.pilot_function")
    if "local.api_function" not in expr(matcher.get("default_service")):
        problems.append("the path matcher's default is not local.api_function")
    by_path = {deployment.path_template(r["rule"]): r["function"] for r in manifest["routes"]}
    pilot = {by_path.get(p) for p in manifest["dispatch_paths"]}
    users = {r["function"] for r in manifest["routes"]} - pilot
    if users != {manifest["front_door_default"]}:
        problems.append(f"other routes go to {users}, the manifest's default is another")
    if expr(tf.locals.get("api_function")) != "local.manifest.front_door_default":
        problems.append("local.api_function is not the manifest's front_door_default")
    http = {f["name"] for f in manifest["functions"] if f["trigger"] == "http"}
    if http != pilot | users or len(pilot) != 1:
        problems.append(f"the HTTP functions {http} are not the front door's two")
    derived = expr(tf.locals.get("pilot_function"))
    if "local.http_functions" not in derived or "!=local.api_function" not in derived:
        problems.append("local.pilot_function is not the HTTP function other than the default")
    return problems


# What each Cloud Run call of the launcher needs (the custom role pilot_launcher grants them).
RUN_PERMISSIONS = {
    "_jobs.create_job": {"run.jobs.create", "run.operations.get"},
    "_jobs.get_job": {"run.jobs.get"},
    "_jobs.list_jobs": {"run.jobs.list"},
    "_jobs.update_job": {"run.jobs.update", "run.operations.get"},
    "_jobs.delete_job": {"run.jobs.delete", "run.operations.get"},
    "_jobs.run_job": {"run.jobs.run", "run.jobs.runWithOverrides"},
    "_executions.list_executions": {"run.executions.list"},
    "_executions.get_execution": {"run.executions.get"},
    "_executions.cancel_execution": {"run.executions.cancel"},
    "_tasks.list_tasks": {"run.tasks.list"},
    "_tasks.get_task": {"run.tasks.get"},
}


def launcher_permission_problems(tf: Terraform, source: str) -> list[str]:
    """Every Cloud Run call in the launcher's `source` is granted by the custom role."""
    role = tf.resources.get(("google_project_iam_custom_role", "pilot_launcher"), {})
    granted = set(role.get("permissions", []))
    calls = set(re.findall(r"\b(_(?:jobs|executions|tasks)\.[a-z_]+)\(", source))
    problems = [
        f"{c}: unknown call, add it to RUN_PERMISSIONS"
        for c in sorted(calls - set(RUN_PERMISSIONS))
    ]
    problems += [
        f"{c} needs {sorted(RUN_PERMISSIONS[c] - granted)}"
        for c in sorted(calls & set(RUN_PERMISSIONS))
        if not RUN_PERMISSIONS[c] <= granted
    ]
    return problems


_VAR_REF = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")


def variable_problems(tf: Terraform) -> list[str]:
    """Every variable has a description and a type; every `var.x` used is declared, and every
    declared variable is used."""
    problems = [
        f"variable {name} has no {attribute}"
        for name, body in tf.variables.items()
        for attribute in ("description", "type")
        if not body.get(attribute)
    ]
    used = {m for s in tf.strings() for m in _VAR_REF.findall(s)}
    problems += [
        f"var.{name} is used but not declared" for name in sorted(used - set(tf.variables))
    ]
    problems += [f"variable {name} is never used" for name in sorted(set(tf.variables) - used)]
    return problems


_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def checkov_skip_problems(tf: Terraform) -> list[str]:
    """A skipped checkov check says why, in words."""
    return [
        f"{file}: checkov skip of {m.group(1)} gives no reason"
        for file, text in tf.texts.items()
        for m in _SKIP.finditer(text)
        if len((m.group(2) or "").strip()) < 20
    ]


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf() -> Terraform:
    return Terraform.load()


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    """The manifest as the code makes it now (JSON types: lists, not tuples)."""
    data: dict[str, Any] = json.loads(json.dumps(deployment.manifest()))
    return data


@pytest.fixture(scope="module")
def indexes() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(INDEXES_FILE.read_text())
    return data


def without_function(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    broken = copy.deepcopy(manifest)
    broken["functions"] = [f for f in broken["functions"] if f["name"] != name]
    return broken


# -- the generated file -------------------------------------------------------------------------


def stale_parts(on_disk: dict[str, Any], generated: dict[str, Any]) -> list[str]:
    """The parts of the manifest file that differ from what the code generates."""
    return sorted(
        k for k in on_disk.keys() | generated.keys() if on_disk.get(k) != generated.get(k)
    )


def test_manifest_file_is_what_the_code_generates(manifest: dict[str, Any]) -> None:
    stale = stale_parts(json.loads(MANIFEST_FILE.read_text()), manifest)
    assert stale == [], (
        f"infra/terraform/skypanda.json is stale ({', '.join(stale)} differ from the code): "
        "run `skypanda deploy manifest` and commit it"
    )


def test_staleness_is_noticed(manifest: dict[str, Any]) -> None:
    old = copy.deepcopy(manifest)
    old["topics"].remove(topology.topic_name(EventType.TICK))
    assert stale_parts(without_function(old, "bulk"), manifest) == ["functions", "topics"]


def test_the_terraform_reads_the_manifest_and_the_index_file(tf: Terraform) -> None:
    assert expr(tf.locals["manifest"]) == 'jsondecode(file("${path.module}/skypanda.json"))'
    assert expr(tf.locals["indexes"]) == (
        'jsondecode(file("${path.module}/../firestore.indexes.json"))'
    )


# -- functions ----------------------------------------------------------------------------------


def test_every_function_of_the_code_is_deployed(tf: Terraform, manifest: dict[str, Any]) -> None:
    # Given the code's functions, When the Terraform's for_each is worked out,
    # Then each is one instance, with its name as entry point and the manifest's sizes.
    assert {f["name"] for f in manifest["functions"]} == set(deployment.FUNCTIONS)
    assert function_problems(tf, manifest) == []
    assert env_problems(tf, manifest) == []


def test_function_checker_notices_a_function_typed_by_hand(
    tf: Terraform, manifest: dict[str, Any]
) -> None:
    broken = tf.edited(
        "functions.tf", "for_each = local.functions", 'for_each = toset(["submit", "dispatch"])'
    )
    assert any("for_each" in p for p in function_problems(broken, manifest))


def test_function_checker_notices_a_local_that_drops_a_function(
    tf: Terraform, manifest: dict[str, Any]
) -> None:
    # A local that iterates over a copy of the manifest without `sweep` gives no sweep instance.
    keys = manifest_keys(tf, "${local.functions}", without_function(manifest, "sweep"))
    assert keys == set(deployment.FUNCTIONS) - {"sweep"}
    broken = tf.edited("main.tf", "local.manifest.functions :", "local.manifest.function_list :")
    assert function_problems(broken, manifest)


def test_function_checker_notices_a_wrong_entry_point_or_trigger(
    tf: Terraform, manifest: dict[str, Any]
) -> None:
    broken = tf.edited("functions.tf", "entry_point     = each.key", 'entry_point     = "main"')
    assert any("entry_point" in p for p in function_problems(broken, manifest))
    cron = copy.deepcopy(manifest)
    cron["functions"][0]["trigger"] = "cron"
    assert any("cron" in p for p in function_problems(tf, cron))


def test_env_checker_notices_a_variable_without_a_value(
    tf: Terraform, manifest: dict[str, Any]
) -> None:
    more = copy.deepcopy(manifest)
    more["functions"][0]["env"].append("SKYPANDA_SOMETHING_NEW")
    assert any("SKYPANDA_SOMETHING_NEW" in p for p in env_problems(tf, more))


def test_scaler_and_sweep_run_one_instance_at_most(tf: Terraform, manifest: dict[str, Any]) -> None:
    assert single_instance_problems(tf, manifest) == []
    two = copy.deepcopy(manifest)
    next(f for f in two["functions"] if f["name"] == "sweep")["max_instances"] = 2
    assert single_instance_problems(tf, two) == ["sweep may run 2 instances, not 1"]
    fixed = tf.edited(
        "functions.tf",
        "max_instance_count               = each.value.max_instances",
        "max_instance_count               = 100",
    )
    assert single_instance_problems(fixed, manifest)


def test_the_outbox_trigger_is_the_manifests(tf: Terraform) -> None:
    fn = tf.resources[("google_cloudfunctions2_function", "fn")]
    trigger = dynamic(fn, "event_trigger")
    assert expr(trigger["for_each"]).startswith('each.value.trigger=="firestore"')
    content = block(trigger, "content")
    assert expr(content["event_type"]) == "local.manifest.outbox_trigger"
    assert content["retry_policy"] == "RETRY_POLICY_RETRY"
    filters = {f["attribute"]: f for f in content["event_filters"]}
    assert expr(filters["database"]["value"]) == "local.database"
    assert tf.locals["database"] == "(default)"
    document = filters["document"]
    assert expr(document["value"]) == "${local.prefix}${local.manifest.outbox_document}"
    assert document["operator"] == "match-path-pattern"


# -- Pub/Sub ------------------------------------------------------------------------------------


def test_topics_and_subscriptions_are_the_topologys(
    tf: Terraform, manifest: dict[str, Any]
) -> None:
    topo = topology.topology()
    assert set(manifest["topics"]) == set(topo.topics)
    assert pubsub_problems(tf, manifest) == []


def test_pubsub_checker_notices_subscriptions_typed_by_hand(
    tf: Terraform, manifest: dict[str, Any]
) -> None:
    broken = tf.edited(
        "pubsub.tf", "for_each = local.subscriptions", 'for_each = toset(["skypanda-tick--scale"])'
    )
    assert pubsub_problems(broken, manifest)


def test_delivery_settings_are_the_codes(tf: Terraform) -> None:
    assert tf.locals["ack_deadline_s"] == topology.ACK_DEADLINE_S
    assert tf.locals["min_backoff"] == f"{topology.MIN_BACKOFF_S}s"
    assert tf.locals["max_backoff"] == f"{topology.MAX_BACKOFF_S}s"
    assert tf.locals["max_delivery_attempts"] == topology.MAX_DELIVERY_ATTEMPTS
    sub = tf.resources[("google_pubsub_subscription", "sub")]
    assert expr(sub["ack_deadline_seconds"]) == "local.ack_deadline_s"
    retry = block(sub, "retry_policy")
    assert (expr(retry["minimum_backoff"]), expr(retry["maximum_backoff"])) == (
        "local.min_backoff",
        "local.max_backoff",
    )
    dead = block(dynamic(sub, "dead_letter_policy"), "content")
    assert expr(dead["max_delivery_attempts"]) == "local.max_delivery_attempts"


def test_the_tick_goes_to_the_codes_tick_topic(tf: Terraform, manifest: dict[str, Any]) -> None:
    assert expr(tf.locals["tick_topic"]) == "local.manifest.tick_topic"
    assert manifest["tick_topic"] == topology.topic_name(EventType.TICK)
    job = tf.resources[("google_cloud_scheduler_job", "tick")]
    assert expr(block(job, "pubsub_target")["topic_name"]) == (
        "google_pubsub_topic.topic[local.tick_topic].id"
    )


def test_the_tick_says_it_is_a_tick(tf: Terraform) -> None:
    # A message without a type is dead-lettered (runtime.cloudfn): the scheduler names the type.
    job = tf.resources[("google_cloud_scheduler_job", "tick")]
    assert block(job, "pubsub_target")["attributes"] == {"type": str(EventType.TICK)}


def test_the_submission_topic_checks_messages_against_the_repositorys_schema(
    tf: Terraform, manifest: dict[str, Any]
) -> None:
    assert manifest["submission_topic"] == topology.topic_name(EventType.SUBMISSION)
    assert expr(tf.locals["submission_topic"]) == "local.manifest.submission_topic"
    schema = tf.resources[("google_pubsub_schema", "submission")]
    assert schema["type"] == "AVRO"
    assert "schemas/submission.avsc" in str(schema["definition"])
    assert (ROOT / "schemas" / "submission.avsc").is_file()
    settings = dynamic(tf.resources[("google_pubsub_topic", "topic")], "schema_settings")
    assert block(settings, "content")["encoding"] == "JSON"
    assert "local.submission_topic" in expr(settings["for_each"])


def test_no_resource_the_code_does_not_know_about(tf: Terraform) -> None:
    assert owned_problems(tf) == []


def test_owned_checker_notices_a_topic_typed_by_hand(tf: Terraform) -> None:
    extra = 'resource "google_pubsub_topic" "extra" {\n  name = "skypanda-extra"\n}\n'
    broken = Terraform.parse({**tf.texts, "extra.tf": extra})
    assert owned_problems(broken) == [
        "google_pubsub_topic: want ['topic'], found ['extra', 'topic']",
        "google_pubsub_topic.extra has no for_each: its names are typed by hand",
    ]
    stray = Terraform.parse({**tf.texts, "extra.tf": 'resource "google_sql_database" "x" {}\n'})
    assert owned_problems(stray) == ["google_sql_database.x: resource type not in ALLOWED_TYPES"]


# -- Firestore, secrets ---------------------------------------------------------------------------


def test_indexes_overrides_and_ttls_come_from_their_files(
    tf: Terraform, manifest: dict[str, Any], indexes: dict[str, Any]
) -> None:
    assert firestore_problems(tf, manifest, indexes) == []


def test_firestore_checker_notices_a_duplicate_index_or_a_ttl_override(
    tf: Terraform, manifest: dict[str, Any], indexes: dict[str, Any]
) -> None:
    twice = copy.deepcopy(indexes)
    twice["indexes"].append(twice["indexes"][0])
    assert any("listed twice" in p for p in firestore_problems(tf, manifest, twice))
    ttl = copy.deepcopy(indexes)
    ttl["fieldOverrides"].append({"collectionGroup": "events", "fieldPath": "expire_at"})
    assert any("expire_at" in p for p in firestore_problems(tf, manifest, ttl))
    by_hand = tf.edited("firestore.tf", "for_each = local.ttl_fields", 'for_each = {events = "x"}')
    assert firestore_problems(by_hand, manifest, indexes)


def test_secrets_are_the_manifests(tf: Terraform, manifest: dict[str, Any]) -> None:
    assert set(manifest["secrets"]) == set(deployment.SECRETS)
    assert secret_problems(tf, manifest) == []
    version = 'resource "google_secret_manager_secret_version" "secret" {\n  for_each = '
    by_hand = tf.edited(
        "secrets.tf", version + "local.manifest.secrets", version + "{ SKYPANDA_TOKEN = 1 }"
    )
    assert secret_problems(by_hand, manifest) == [
        "google_secret_manager_secret_version.secret does not iterate over the manifest's secrets"
    ]


# -- front door, pilots -------------------------------------------------------------------------


def test_front_door_sends_pilot_paths_to_dispatch(tf: Terraform, manifest: dict[str, Any]) -> None:
    assert manifest["dispatch_paths"] == deployment.dispatch_templates()
    http = {f["name"] for f in manifest["functions"] if f["trigger"] == "http"}
    assert set(deployment.HTTP_PARTS) == http and manifest["front_door_default"] == "submit"
    assert frontdoor_problems(tf, manifest) == []


def test_front_door_checker_notices_paths_typed_by_hand(
    tf: Terraform, manifest: dict[str, Any]
) -> None:
    broken = tf.edited(
        "frontdoor.tf",
        "for_each = local.manifest.dispatch_paths",
        'for_each = ["/v1/pilots"]',
    )
    assert frontdoor_problems(broken, manifest) == [
        "the URL map's route_rules do not iterate over the manifest's dispatch_paths"
    ]


def test_the_cloud_run_pilot_job_is_the_one_the_launcher_would_make(tf: Terraform) -> None:
    # The launcher updates a job that differs from its template: the Terraform's must not.
    job = tf.resources[("google_cloud_run_v2_job", "pilot")]
    container = block(job, "template", "template", "containers")
    assert container["name"] == cloudrun_jobs.CONTAINER  # executions override its environment
    assert container["command"] == cloudrun_jobs.PILOT_COMMAND
    env = [e["name"] for e in container["env"]]
    assert env == [cloudrun_jobs.ENV_SERVER, "SKYPANDA_QUEUE"]  # no credential: each has its own
    assert expr(container["env"][0]["value"]) == "local.server_url"
    assert set(job["labels"]) == {cloudrun_jobs.LABEL_QUEUE}
    assert set(block(job, "template")["labels"]) == {cloudrun_jobs.LABEL_QUEUE}
    table = {int(cpus): tuple(pair) for cpus, pair in tf.locals["cloudrun_memory_mib"].items()}
    assert table == dict(cloudrun_limits.CPU_MEMORY_MIB)


def test_the_functions_may_make_every_cloud_run_call_of_the_launcher(tf: Terraform) -> None:
    source = Path(cloudrun_launcher.__file__).read_text()
    assert launcher_permission_problems(tf, source) == []
    assert launcher_permission_problems(tf, "self._jobs.set_iam_policy(x)") == [
        "_jobs.set_iam_policy: unknown call, add it to RUN_PERMISSIONS"
    ]
    narrower = tf.edited("iam.tf", '    "run.jobs.update",\n', "")
    assert launcher_permission_problems(narrower, source) == [
        "_jobs.update_job needs ['run.jobs.update']"
    ]


# -- variables, checkov -------------------------------------------------------------------------


def test_variables_are_typed_described_declared_and_used(tf: Terraform) -> None:
    assert variable_problems(tf) == []


def test_variable_checker_notices_an_undeclared_variable(tf: Terraform) -> None:
    broken = tf.edited("scheduler.tf", "var.tick_schedule", "var.tick_cron")
    assert variable_problems(broken) == [
        "var.tick_cron is used but not declared",
        "variable tick_schedule is never used",
    ]


def test_every_checkov_skip_says_why(tf: Terraform) -> None:
    assert checkov_skip_problems(tf) == []
    bare = 'resource "google_pubsub_topic" "t" {\n  #checkov:skip=CKV_GCP_83\n}\n'
    broken = Terraform.parse({**tf.texts, "extra.tf": bare})
    assert checkov_skip_problems(broken) == ["extra.tf: checkov skip of CKV_GCP_83 gives no reason"]


def test_watched_buckets_notify_the_codes_object_topic(tf: Terraform) -> None:
    from skypanda.domain.events import EventType

    text = tf.texts["watch.tf"]
    assert f'object_topic = "{topology.topic_name(EventType.OBJECT_FINALIZED)}"' in text
    assert 'payload_format = "JSON_API_V1"' in text
    assert 'event_types    = ["OBJECT_FINALIZE"]' in text
    assert "for_each       = var.watched_buckets" in text
