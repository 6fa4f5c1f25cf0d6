"""The Zero to JupyterHub values (workshop/hub/z2jh/config.yaml) agree with `make hub`.

Kubernetes cannot run here, so this checks what can be checked: the file parses, every
setting the one-machine hub makes has the same value in the Helm values (or is named as
one-machine only), and the parts the chart cannot check (sizes, the instructor's hook,
the GPU share) mean what HubSettings means. jupyterhub_config.py is read with `ast`, never
run (it needs root, the hub's environment and a machine); only the right-hand sides of
the settings compared here are evaluated, with HubSettings() as `s`.

With Z2JH_CHART set to an unpacked chart (`helm pull jupyterhub --repo
https://hub.jupyter.org/helm-chart/ --version 4.4.0 --untar`), the values are also
validated against the chart's own schema.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import sys
import types
from pathlib import Path

import pytest
import yaml
from jupyterhub.app import JupyterHub
from jupyterhub.auth import Authenticator
from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from jupyterhub.spawner import Spawner
from jupyterhub.traitlets import ByteSpecification
from traitlets import TraitError
from traitlets.config import Config

from workshop.hub.settings import USERNAME_PATTERN, HubSettings, SettingsError, parse_size

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "workshop" / "hub"
VALUES_FILE = HUB / "z2jh" / "config.yaml"
DEFAULTS = HubSettings()


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; Helm refuses the file. Refuse it here too."""


def _no_duplicates(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate keys {dup}", node.start_mark
        )
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)
VALUES = yaml.load(VALUES_FILE.read_text(), Loader=_StrictLoader)  # noqa: S506 (safe subclass)


def helm(path: str):
    node = VALUES
    for part in path.split("."):
        node = node[part]
    return node


# --- the one-machine hub, read with ast ----------------------------------------------
CONFIG_SOURCE = (HUB / "jupyterhub_config.py").read_text()
TREE = ast.parse(CONFIG_SOURCE)


def _settings_made(tree: ast.Module) -> dict[str, ast.expr]:
    """'Section.trait' -> the expression assigned to c.Section.trait."""
    made = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Attribute)
                    and isinstance(target.value.value, ast.Name)
                    and target.value.value.id == "c"
                ):
                    made[f"{target.value.attr}.{target.attr}"] = node.value
    return made


ONE_MACHINE = _settings_made(TREE)
NAMESPACE = {"s": DEFAULTS, "USERNAME_PATTERN": USERNAME_PATTERN, "min": min, "max": max}


def one_machine(trait: str, namespace: dict | None = None):
    """The value `make hub` gives a trait with the default settings."""
    expr = ast.Expression(ONE_MACHINE[trait])
    return eval(compile(expr, "jupyterhub_config.py", "eval"), {**NAMESPACE, **(namespace or {})})


def _services() -> list[dict]:
    """The one-machine services: every dict literal with a "name" and a "url" or "command";
    values that need the machine (ports, paths) are None, their expressions under KEY_node."""
    found = []
    for node in ast.walk(TREE):
        if not isinstance(node, ast.Dict):
            continue
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        if "name" in keys and ({"url", "command"} & set(keys)):
            svc = {}
            for k, v in zip(node.keys, node.values):
                try:
                    svc[k.value] = ast.literal_eval(v)
                except ValueError:
                    svc[k.value] = None
                    svc[f"{k.value}_node"] = v
            found.append(svc)
    return found


SERVICES = _services()


def _roles() -> list[dict]:
    """c.JupyterHub.load_roles as the config computes it (access from SERVICES)."""
    (access,) = [
        n.value
        for n in ast.walk(TREE)
        if isinstance(n, ast.Assign) and [getattr(t, "id", None) for t in n.targets] == ["access"]
    ]
    scopes = eval(compile(ast.Expression(access), "access", "eval"), {"services": SERVICES})
    return one_machine("JupyterHub.load_roles", {"access": scopes})


# --- what each one-machine setting is in the Helm values -------------------------------
def k8s_bytes(quantity) -> int:
    """A memory quantity as Kubernetes reads it (the placeholder pods' requests)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(quantity))
    assert m, f"{quantity!r} is not a Kubernetes quantity"
    scale = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    scale |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return int(float(m.group(1)) * scale[m.group(2)])


def kubespawner_bytes(quantity) -> int:
    """The same quantity as KubeSpawner reads it (JupyterHub's ByteSpecification)."""
    return ByteSpecification().validate(None, quantity)


def same_bytes(helm_value, expected: str) -> None:
    want = parse_size(expected)
    assert kubespawner_bytes(helm_value) == want, f"KubeSpawner reads {helm_value!r} != {expected}"
    assert k8s_bytes(helm_value) == want, f"Kubernetes reads {helm_value!r} != {expected}"


def equal(helm_value, expected) -> None:
    assert helm_value == expected


def at_least(helm_value, expected) -> None:
    assert helm_value >= expected, "a pod may also wait for a node"


def same_set(helm_value, expected) -> None:
    assert sorted(helm_value) == sorted(expected)


MAPPED = {  # one-machine trait: (Helm key, comparison)
    "JupyterHub.concurrent_spawn_limit": ("hub.config.JupyterHub.concurrent_spawn_limit", equal),
    "JupyterHub.last_activity_interval": ("hub.config.JupyterHub.last_activity_interval", equal),
    "Authenticator.admin_users": ("hub.config.Authenticator.admin_users", same_set),
    "Authenticator.allow_all": ("hub.config.Authenticator.allow_all", equal),
    "Authenticator.username_pattern": ("hub.config.Authenticator.username_pattern", equal),
    "Spawner.default_url": ("hub.config.Spawner.default_url", equal),
    "Spawner.http_timeout": ("hub.config.Spawner.http_timeout", equal),
    "Spawner.start_timeout": ("singleuser.startTimeout", at_least),
    "Spawner.mem_limit": ("singleuser.memory.limit", same_bytes),
    "Spawner.cpu_limit": ("singleuser.cpu.limit", equal),
    "Spawner.server_token_scopes": ("hub.config.KubeSpawner.server_token_scopes", equal),
}
CHECKED_APART = {  # compared by their own tests below
    "JupyterHub.services": "test_services",
    "JupyterHub.load_roles": "test_roles",
}
MACHINE_ONLY = {  # what the chart decides for itself on Kubernetes
    "JupyterHub.ip": "the proxy-public Service",
    "JupyterHub.port": "the proxy-public Service",
    "JupyterHub.hub_ip": "the hub Service",
    "JupyterHub.hub_port": "the hub Service",
    "ConfigurableHTTPProxy.api_url": "the proxy-api Service",
    "ConfigurableHTTPProxy.command": "the proxy pod",
    "ConfigurableHTTPProxy.pid_file": "the proxy pod",
    "JupyterHub.db_url": "hub.db (a PVC)",
    "JupyterHub.cookie_secret_file": "the hub Secret",
    "JupyterHub.template_paths": "the login page's hint is one-machine only",
    "JupyterHub.template_vars": "the login page's hint is one-machine only",
    "JupyterHub.spawner_class": "KubeSpawner",
    "Spawner.cmd": "singleuser.cmd (the image's own jupyterhub-singleuser)",
    "JupyterHub.cleanup_servers": "pods outlive a hub restart",
    # claimed names (workshop/hub/auth.py) need it in the hub's image: the chart keeps the
    # shared password (anyone with it opens any participant's name)
    "JupyterHub.authenticator_class": "claimed names: workshop.hub.auth (the chart: shared)",
    "WorkshopAuthenticator.room_password": "the chart's SharedPasswordAuthenticator.user_password",
    "WorkshopAuthenticator.instructor_password": "its admin_password",
    "WorkshopAuthenticator.dbm_path": "the claimed names' hashes, in the hub's state",
    "WorkshopAuthenticator.roster_state": "the roster's codes (HUB_ROSTER), one machine only",
}


def test_every_one_machine_setting_is_mapped_or_named_one_machine_only():
    groups = [set(MAPPED), set(CHECKED_APART), set(MACHINE_ONLY)]
    assert set().union(*groups) == set(ONE_MACHINE), "classify the new or removed setting here"
    assert sum(map(len, groups)) == len(ONE_MACHINE), "a setting is classified twice"


@pytest.mark.parametrize("trait", sorted(MAPPED))
def test_helm_value_matches_the_one_machine_hub(trait):
    key, compare = MAPPED[trait]
    compare(helm(key), one_machine(trait))


def test_file_parses_into_the_charts_sections():
    assert set(VALUES) == {"custom", "hub", "singleuser", "cull", "scheduling", "prePuller"}
    assert set(helm("hub.config")) == {
        "JupyterHub",
        "SharedPasswordAuthenticator",
        "Authenticator",
        "Spawner",
        "KubeSpawner",
    }


def test_hub_config_names_real_traits():
    """The chart passes hub.config through unchecked: a misspelt trait would do nothing."""
    classes = {
        "JupyterHub": JupyterHub,
        "Authenticator": Authenticator,
        "Spawner": Spawner,
        "SharedPasswordAuthenticator": SharedPasswordAuthenticator,
        "KubeSpawner": Spawner,
    }  # KubeSpawner is not installed here: its traits are looked up on Spawner
    for section, traits in helm("hub.config").items():
        missing = set(traits) - set(classes[section].class_trait_names(config=True))
        assert not missing, f"hub.config.{section}: no such trait {missing}"


def test_admin_access_is_jupyterhubs_default_not_the_charts():
    assert "JupyterHub.admin_access" not in ONE_MACHINE
    assert helm("hub.config.JupyterHub.admin_access") is JupyterHub.admin_access.default_value


def test_passwords_are_placeholders_the_hub_refuses():
    user = helm("hub.config.SharedPasswordAuthenticator.user_password")
    admin = helm("hub.config.SharedPasswordAuthenticator.admin_password")
    with pytest.raises(SettingsError):
        HubSettings(workshop_password=user).validate()
    with pytest.raises(SettingsError):
        HubSettings(instructor_password=admin).validate()
    for trait, value in (("user_password", user), ("admin_password", admin)):
        with pytest.raises(ValueError, match=trait):
            SharedPasswordAuthenticator(**{trait: value})


def test_memory_and_cpu_guarantees_fit_the_limits():
    limit, guarantee = helm("singleuser.memory.limit"), helm("singleuser.memory.guarantee")
    assert kubespawner_bytes(guarantee) == k8s_bytes(guarantee) == k8s_bytes(limit)
    assert 0 < helm("singleuser.cpu.guarantee") <= helm("singleuser.cpu.limit")


def test_gi_would_not_do():
    """Why the sizes are bytes: KubeSpawner rejects "Gi", Kubernetes reads "G" as 10**9."""
    with pytest.raises(TraitError, match="not a valid memory specification"):
        kubespawner_bytes("3Gi")
    assert k8s_bytes(DEFAULTS.hub_mem_limit) != parse_size(DEFAULTS.hub_mem_limit)


def test_instructor_limits(monkeypatch):
    instructor = helm("custom.instructor")
    assert instructor["name"] == DEFAULTS.instructor
    assert helm("hub.config.Authenticator.admin_users") == [instructor["name"]]
    same_bytes(instructor["memory"], DEFAULTS.hub_instructor_mem_limit)
    assert instructor["cpu"] == DEFAULTS.hub_instructor_cpu_limit

    # Run the hook as the hub would, against spawner stand-ins.
    z2jh = types.ModuleType("z2jh")
    z2jh.get_config = lambda key: helm(key)
    monkeypatch.setitem(sys.modules, "z2jh", z2jh)
    c = Config()
    exec(helm("hub.extraConfig.instructor-limits"), {"c": c})  # noqa: S102 (our own snippet)
    hook = c.KubeSpawner.pre_spawn_hook
    env = dict(helm("singleuser.extraEnv"))

    def spawner(name):
        return types.SimpleNamespace(
            user=types.SimpleNamespace(name=name),
            environment=env,
            mem_limit=helm("singleuser.memory.limit"),
            cpu_limit=helm("singleuser.cpu.limit"),
        )

    teacher, participant = spawner(DEFAULTS.instructor), spawner("alice")
    hook(teacher)
    hook(participant)
    assert kubespawner_bytes(teacher.mem_limit) == parse_size(DEFAULTS.hub_instructor_mem_limit)
    assert teacher.cpu_limit == DEFAULTS.hub_instructor_cpu_limit
    threads = str(math.ceil(DEFAULTS.hub_instructor_cpu_limit))
    assert teacher.environment["OMP_NUM_THREADS"] == threads
    assert env == helm("singleuser.extraEnv"), "the hook changed everyone's environment"
    assert kubespawner_bytes(participant.mem_limit) == parse_size(DEFAULTS.hub_mem_limit)
    assert participant.cpu_limit == DEFAULTS.hub_cpu_limit


def test_gpu_profile_is_one_gpu_and_the_hubs_memory_share():
    profiles = {p["slug"]: p for p in helm("singleuser.profileList")}
    assert [p["slug"] for p in profiles.values() if p.get("default")] == ["cpu"]
    assert "extra_resource_limits" not in profiles["cpu"].get("kubespawner_override", {})
    override = profiles["gpu"]["kubespawner_override"]
    assert override["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    share = 1 / DEFAULTS.hub_gpu_share
    env = override["environment"]
    assert env["WORKSHOP_GPU_MEMORY_FRACTION"] == f"{share:.4f}"  # as the spawner writes it
    option, value = env["PYTORCH_CUDA_ALLOC_CONF"].split(":")
    assert option == "per_process_memory_fraction"
    assert float(value) == share


def _get_env_keywords() -> dict[str, object]:
    """The names the one-machine spawner's get_env sets (literal values, else None)."""
    tree = ast.parse((HUB / "spawner.py").read_text())
    (get_env,) = [
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "get_env"
    ]
    names = {}
    for node in ast.walk(get_env):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "update":
            for kw in node.keywords:
                names[kw.arg] = kw.value.value if isinstance(kw.value, ast.Constant) else None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            names[node.slice.value] = None
    return names


def test_environment_is_the_spawners():
    extra = helm("singleuser.extraEnv")
    gpu = next(p for p in helm("singleuser.profileList") if p["slug"] == "gpu")
    gpu_env = gpu["kubespawner_override"]["environment"]
    elsewhere = {"PATH", "MEM_LIMIT", "CPU_LIMIT", "CUDA_VISIBLE_DEVICES"}  # image, KubeSpawner
    spawner_env = _get_env_keywords()
    assert set(spawner_env) - set(extra) - set(gpu_env) == elsewhere
    assert all(isinstance(v, str) for v in extra.values()), "env values must be strings"
    for name, literal in spawner_env.items():
        if literal is not None:
            assert extra[name] == literal, name
    assert extra["OMP_NUM_THREADS"] == str(math.ceil(helm("singleuser.cpu.limit")))
    assert extra["JUPYTERHUB_ACTIVITY_INTERVAL"] == str(DEFAULTS.hub_activity_interval)
    notebook_dir = helm("hub.config.Spawner.notebook_dir")
    assert extra["ARTIFACTS"] == f"{notebook_dir}/artifacts"


def test_course_and_share_are_where_the_server_looks():
    extra = helm("singleuser.extraEnv")
    script = helm("singleuser.cmd")[2]
    assert '"$WORKSHOP_COURSE"/workshop/notebooks/' in script
    assert helm("singleuser.cmd")[-1] == "sh", "$0 for sh -c, so the hub's arguments stay in $@"
    notebook = Path(helm("hub.config.Spawner.default_url")).name
    assert (ROOT / "workshop" / "notebooks" / notebook).is_file()
    mounts = helm("singleuser.storage.extraVolumeMounts")
    (volume,) = helm("singleuser.storage.extraVolumes")
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    assert all(m["readOnly"] is True and m["name"] == volume["name"] for m in mounts)
    paths = {m["mountPath"] for m in mounts}
    assert extra["WORKSHOP_SHARED_ARTIFACTS"] in paths
    (data,) = re.findall(r"ln -s (\S+) data", script)
    assert data in paths


def one_machine_expr(node: ast.expr):
    return eval(compile(ast.Expression(node), "jupyterhub_config.py", "eval"), NAMESPACE)


def test_culling():
    (culler,) = [svc for svc in SERVICES if svc["name"] == "idle-culler"]
    # the one-machine culler's arguments, with the default settings
    args = [
        one_machine_expr(e) for e in culler["command_node"].elts if isinstance(e, ast.JoinedStr)
    ]
    flags = dict(a.removeprefix("--").split("=") for a in args)
    assert set(flags) == {"timeout", "cull-every"}
    assert helm("cull.enabled") is True
    assert helm("cull.timeout") == int(flags["timeout"]) == DEFAULTS.hub_idle_timeout
    assert helm("cull.every") == int(flags["cull-every"]) == DEFAULTS.hub_cull_every


def test_services():
    with_url = {svc["name"]: svc for svc in SERVICES if "url" in svc}
    assert {svc["name"] for svc in SERVICES} - set(with_url) == {"idle-culler"}  # cull.*
    services = helm("hub.services")
    assert set(services) == set(with_url) == {"progress", "demo"}
    for name, svc in services.items():
        assert re.fullmatch(rf"http://{name}:\d+", svc["url"]), svc["url"]
        assert svc["oauth_no_confirm"] == with_url[name]["oauth_no_confirm"]
    progress = "access:services!service=progress"
    assert progress in helm("hub.config.KubeSpawner.server_token_scopes")
    assert helm("singleuser.extraEnv.WORKSHOP_PROGRESS_URL").endswith(
        "/services/progress/api/results"
    )


def test_roles():
    roles = {role["name"]: role for role in _roles()}
    # idle-culler: the chart's own; accounts: the roster's servers and resets, one machine only
    assert set(roles) - set(helm("hub.loadRoles")) == {"idle-culler", "accounts"}
    for name, role in helm("hub.loadRoles").items():
        assert sorted(role["scopes"]) == sorted(roles[name]["scopes"]), name
        assert role.get("services") == roles[name].get("services"), name
    assert "access:services!service=demo" in helm("hub.loadRoles.user.scopes")


def test_placeholders_and_prepuller():
    assert helm("scheduling.userPlaceholder.enabled") is True
    assert helm("scheduling.userPlaceholder.replicas") >= 1
    assert helm("scheduling.podPriority.enabled") is True, "placeholders are evicted by priority"
    assert helm("prePuller.hook.enabled") is True
    assert helm("prePuller.continuous.enabled") is True


@pytest.mark.skipif(not os.environ.get("Z2JH_CHART"), reason="Z2JH_CHART: an unpacked chart")
def test_chart_schema():
    jsonschema = pytest.importorskip("jsonschema")
    chart = Path(os.environ["Z2JH_CHART"])
    schema = json.loads((chart / "values.schema.json").read_text())
    defaults = yaml.safe_load((chart / "values.yaml").read_text())

    def merge(base, over):  # as Helm does: maps merge, everything else replaces
        out = dict(base)
        for k, v in over.items():
            both = isinstance(v, dict) and isinstance(base.get(k), dict)
            out[k] = merge(base[k], v) if both else v
        return out

    errors = [
        e.message for e in jsonschema.Draft7Validator(schema).iter_errors(merge(defaults, VALUES))
    ]
    assert not errors
