"""The MCPServer resource (kagent.dev/v1alpha1) and the kmcp.yaml project file, as msgspec Structs.

The Structs are the schema: the CRD in manifests/ is generated from them (kmcp.crd), field docs become the
CRD's descriptions, and decoding validates types, enums and bounds in one pass. What a structural schema cannot
say (a stdio server needs a command, mounts must name declared volumes) is checked by ``semantic_problems``.
No I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta, field

from kmcp import podcontract

GROUP = "kagent.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "MCPServer"
PLURAL = "mcpservers"
DEFAULT_PORT = 3000

# Names of the pod's own volumes and paths; user volumes and mounts must not collide with them.
BRIDGE_VOLUME = "kmcp"
BRIDGE_PATH = podcontract.BRIDGE_PATH
RESERVED_VOLUME_PREFIX = "kmcp-"
CONFIG_VOLUME = "kmcp-config"
CONFIG_PATH = "/config"
SECRETS_PATH = "/secrets"


@dataclass(frozen=True)
class CelRule:
    """An x-kubernetes-validations rule attached to a Struct, so the CRD rejects it before the controller sees it."""

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None


# Kubernetes core types kmcp passes through unchanged. The CRD keeps them as open objects
# (x-kubernetes-preserve-unknown-fields) and the apiserver validates them when the Deployment is applied.
PassThrough = Annotated[dict[str, Any], Meta(extra={"k8s": "preserve"})]
Quantity = Annotated[str | int, Meta(extra={"k8s": "int-or-string"})]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"  # the apiserver's rule before RELAXED_ENV_NAMES_SINCE
# Kubernetes 1.32 turned RelaxedEnvironmentVariableValidation on by default: any printable ASCII but "=".
RELAXED_ENV_NAMES_SINCE = (1, 32)

NonEmpty = Annotated[str, Meta(min_length=1)]
ObjectName = Annotated[str, Meta(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
Port = Annotated[int, Meta(ge=1, le=65535)]


class LocalObjectReference(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A reference to an object by name in the MCPServer's namespace."""

    name: Annotated[ObjectName, Meta(description="Name of the referenced object.")]


class VolumeMount(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """Mounts one of spec.deployment.volumes into the mcp-server container."""

    name: Annotated[str, Meta(min_length=1, description="Name of a volume in spec.deployment.volumes.")]
    mount_path: Annotated[str, Meta(min_length=1, description="Absolute path in the container.")]
    read_only: Annotated[bool, Meta(description="Mount read-only.")] = False
    sub_path: Annotated[str | None, Meta(description="Path within the volume to mount instead of its root.")] = None
    sub_path_expr: Annotated[
        str | None, Meta(description="Like subPath, with $(VAR) expanded from the container's environment.")
    ] = None
    mount_propagation: Annotated[
        Literal["None", "HostToContainer", "Bidirectional"] | None,
        Meta(description="How mounts propagate between host and container."),
    ] = None
    recursive_read_only: Annotated[
        Literal["Disabled", "IfPossible", "Enabled"] | None,
        Meta(description="Whether a read-only mount is read-only recursively."),
    ] = None


class Toleration(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """Lets the pod schedule onto nodes with a matching taint."""

    key: Annotated[str | None, Meta(description="Taint key to match; empty with Exists matches all.")] = None
    operator: Annotated[
        Literal["Exists", "Equal"] | None, Meta(description="Exists or Equal (the default).")
    ] = None
    value: Annotated[str | None, Meta(description="Taint value to match with Equal.")] = None
    effect: Annotated[
        Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None,
        Meta(description="Taint effect to match; empty matches all effects."),
    ] = None
    toleration_seconds: Annotated[
        int | None, Meta(description="How long a NoExecute taint is tolerated before eviction.")
    ] = None


class ResourceRequirements(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Compute resources of the mcp-server container."""

    limits: Annotated[
        dict[str, Quantity], Meta(description="Maximum resources, e.g. cpu: 500m, memory: 128Mi.")
    ] = field(default_factory=dict)
    requests: Annotated[
        dict[str, Quantity], Meta(description="Resources the scheduler reserves, e.g. cpu: 10m.")
    ] = field(default_factory=dict)


class ServiceAccountConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Metadata for the ServiceAccount kmcp creates for the pod (cloud workload identity: IRSA, GKE, Azure)."""

    annotations: Annotated[
        dict[str, str], Meta(description="Annotations, e.g. eks.amazonaws.com/role-arn for AWS IRSA.")
    ] = field(default_factory=dict)
    labels: Annotated[dict[str, str], Meta(description="Labels added to the ServiceAccount.")] = field(
        default_factory=dict
    )


class MCPServerDeployment(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """How to run the MCP server: its image, command and pod settings."""

    __cel__: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!(has(self.serviceAccount) && has(self.serviceAccountName))",
            message="serviceAccount and serviceAccountName are mutually exclusive: "
            "kmcp either creates a ServiceAccount or uses an existing one",
            field_path=".serviceAccountName",
        ),
    )

    image: Annotated[str, Meta(min_length=1, description="Container image of the MCP server.")]
    cmd: Annotated[
        NonEmpty | None,
        Meta(
            description="Command to run in the container. Required for stdio: kmcp wraps it to bridge stdio.",
        ),
    ] = None
    args: Annotated[list[str], Meta(description="Arguments for the command.")] = field(default_factory=list)
    port: Annotated[
        Port,
        Meta(description="Port of the Service; for stdio also the port the transport adapter listens on."),
    ] = DEFAULT_PORT
    env: Annotated[dict[str, str], Meta(description="Environment variables of the mcp-server container.")] = field(
        default_factory=dict
    )
    secret_refs: Annotated[
        list[LocalObjectReference],
        Meta(description="Secrets whose keys become environment variables; each is also mounted read-only "
             "at /secrets/<name>."),
    ] = field(default_factory=list)
    config_map_refs: Annotated[
        list[LocalObjectReference],
        Meta(description="ConfigMaps projected read-only at /config; a key may appear in only one of them."),
    ] = field(default_factory=list)
    volumes: Annotated[
        list[Annotated[dict[str, Any], Meta(extra={"k8s": "volume"})]],
        Meta(description="Pod volumes (core/v1 Volume), mounted with volumeMounts."),
    ] = field(default_factory=list)
    volume_mounts: Annotated[
        list[VolumeMount], Meta(description="Mounts of spec.deployment.volumes in the mcp-server container.")
    ] = field(default_factory=list)
    service_account: Annotated[
        ServiceAccountConfig | None,
        Meta(description="Annotations and labels for the ServiceAccount kmcp creates."),
    ] = None
    service_account_name: Annotated[
        ObjectName | None,
        Meta(description="Use this existing ServiceAccount instead of creating one."),
    ] = None
    replicas: Annotated[
        Annotated[int, Meta(ge=0)] | None,
        Meta(description="Pod replicas. Unset leaves the count to whoever scales it (e.g. an HPA); "
             "a new Deployment starts with 1."),
    ] = None
    resources: Annotated[
        ResourceRequirements | None, Meta(description="Compute resources of the mcp-server container.")
    ] = None
    image_pull_policy: Annotated[
        Literal["Always", "IfNotPresent", "Never"] | None,
        Meta(description="Pull policy of the MCP server image."),
    ] = None
    image_pull_secrets: Annotated[
        list[LocalObjectReference], Meta(description="Secrets for pulling images from private registries.")
    ] = field(default_factory=list)
    security_context: Annotated[
        PassThrough | None, Meta(description="core/v1 SecurityContext of the mcp-server container.")
    ] = None
    pod_security_context: Annotated[
        PassThrough | None, Meta(description="core/v1 PodSecurityContext of the pod.")
    ] = None
    node_selector: Annotated[dict[str, str], Meta(description="Node labels the pod must match.")] = field(
        default_factory=dict
    )
    tolerations: Annotated[list[Toleration], Meta(description="Taints the pod tolerates.")] = field(
        default_factory=list
    )
    affinity: Annotated[PassThrough | None, Meta(description="core/v1 Affinity of the pod.")] = None
    labels: Annotated[dict[str, str], Meta(description="Extra labels on the pod.")] = field(default_factory=dict)
    annotations: Annotated[dict[str, str], Meta(description="Extra annotations on the pod.")] = field(
        default_factory=dict
    )


class StdioTransport(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """How the transport adapter runs a stdio MCP server. An empty object takes every default."""

    session_mode: Annotated[
        Literal["isolated", "shared"],
        Meta(description="isolated: one server process per MCP session. shared: one process for all sessions."),
    ] = "isolated"
    warm_pool_size: Annotated[
        int,
        Meta(ge=0, le=32, description="Server processes started ahead of demand so a new session skips the "
             "server's cold start (isolated mode)."),
    ] = 1
    session_idle_timeout_seconds: Annotated[
        int, Meta(ge=10, le=86400, description="An idle MCP session and its process end after this many seconds.")
    ] = 600
    max_sessions: Annotated[
        int, Meta(ge=1, le=10000, description="Concurrent MCP sessions per pod; more get HTTP 503.")
    ] = 100
    server_era: Annotated[
        Literal["auto", "modern", "legacy", "off"],
        Meta(description="How MCP 2026-07-28 (stateless) requests are served. auto: the adapter asks a warm server "
             "process server/discover and passes them through to a server that speaks 2026-07-28, or bridges them "
             "onto initialized processes of a handshake-era one; modern/legacy: skip the probe; off: refuse them."),
    ] = "auto"
    request_timeout_seconds: Annotated[
        int,
        Meta(ge=0, le=86400, description="A request the server neither answers nor reports progress on for this "
             "many seconds fails with JSON-RPC error -32001 and the server gets notifications/cancelled; 0 waits "
             "forever."),
    ] = 300


class HTTPTransport(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """How to reach an MCP server that already speaks HTTP."""

    target_port: Annotated[Port, Meta(description="Port the MCP server listens on in its container.")]
    path: Annotated[
        str, Meta(pattern=r"^/", description="HTTP path of the MCP endpoint, e.g. /mcp.")
    ] = "/mcp"


class JWTAuth(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """Where bearer JWTs come from and how to check their signatures."""

    issuer: Annotated[str, Meta(min_length=1, pattern=r"^https?://",
                                description="The required iss claim, e.g. https://login.example.com.")]
    jwks_url: Annotated[
        Annotated[str, Meta(pattern=r"^https?://")] | None,
        Meta(description="The signing keys (JWKS); unset: found by OIDC discovery from the issuer."),
    ] = None


class MCPServerAuth(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """Bearer-token auth the transport adapter enforces in front of the MCP endpoint (stdio transport only)."""

    __cel__: ClassVar[tuple[CelRule, ...]] = (
        CelRule(rule="self.type != 'jwt' || has(self.jwt)", message="jwt auth needs jwt.issuer",
                field_path=".jwt"),
        CelRule(rule="self.type == 'jwt' || !has(self.jwt)", message="jwt is only valid when type is jwt",
                field_path=".jwt"),
        CelRule(rule="self.type == 'kubernetes' || !has(self.requireSubjectAccessReview) || "
                     "!self.requireSubjectAccessReview",
                message="requireSubjectAccessReview is only valid when type is kubernetes",
                field_path=".requireSubjectAccessReview"),
    )

    type: Annotated[
        Literal["none", "kubernetes", "jwt"],
        Meta(description="none: open. kubernetes: ServiceAccount tokens checked with a TokenReview. "
             "jwt: JWTs checked against the issuer's keys."),
    ] = "none"
    audiences: Annotated[
        list[Annotated[str, Meta(min_length=1)]],
        Meta(description="Audiences a token must carry; unset: the in-cluster URL of the Service."),
    ] = field(default_factory=list)
    require_subject_access_review: Annotated[
        bool, Meta(description="kubernetes: also require the caller to be allowed to get this MCPServer "
                   "(a SubjectAccessReview).")
    ] = False
    jwt: Annotated[JWTAuth | None, Meta(description="The JWT issuer and keys. Required for jwt.")] = None
    authorization_servers: Annotated[
        list[Annotated[str, Meta(min_length=1)]],
        Meta(description="OAuth authorization servers advertised in the protected-resource metadata; "
             "unset with jwt: the issuer."),
    ] = field(default_factory=list)


class MCPServerSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """Desired state of an MCP server on Kubernetes."""

    __cel__: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.transportType != 'http' || has(self.httpTransport)",
            message="httpTransport is required when transportType is http",
            field_path=".httpTransport",
        ),
        CelRule(
            rule="self.transportType != 'stdio' || !has(self.httpTransport)",
            message="httpTransport is only valid when transportType is http",
            field_path=".httpTransport",
        ),
        CelRule(
            rule="self.transportType != 'http' || !has(self.stdioTransport)",
            message="stdioTransport is only valid when transportType is stdio",
            field_path=".stdioTransport",
        ),
        CelRule(
            rule="self.transportType == 'stdio' || !has(self.auth) || self.auth.type == 'none'",
            message="auth is enforced by the stdio transport adapter: only valid when transportType is stdio",
            field_path=".auth",
        ),
    )

    transport_type: Annotated[
        Literal["stdio", "http"],
        Meta(description="stdio: kmcp adds a transport adapter that serves the server over HTTP. "
             "http: the server already speaks MCP over HTTP."),
    ]
    deployment: Annotated[MCPServerDeployment, Meta(description="How to run the MCP server.")]
    stdio_transport: Annotated[
        StdioTransport | None, Meta(description="Settings of the stdio transport adapter.")
    ] = None
    http_transport: Annotated[
        HTTPTransport | None, Meta(description="Where the HTTP MCP server listens. Required for http.")
    ] = None
    auth: Annotated[
        MCPServerAuth | None, Meta(description="Bearer-token auth in front of the MCP endpoint; unset: open.")
    ] = None


ConditionType = Literal["Accepted", "ResolvedRefs", "Programmed", "Ready"]
CONDITION_TYPES: tuple[str, ...] = ("Accepted", "ResolvedRefs", "Programmed", "Ready")


class Condition(msgspec.Struct, rename="camel", omit_defaults=True):
    """A metav1.Condition: lastTransitionTime changes only when status does."""

    type: Annotated[str, Meta(description="Accepted, ResolvedRefs, Programmed or Ready.")]
    status: Annotated[Literal["True", "False", "Unknown"], Meta(description="True, False or Unknown.")]
    reason: Annotated[str, Meta(description="CamelCase reason for the condition's last transition.")]
    message: Annotated[str, Meta(description="Human-readable details.")] = ""
    last_transition_time: Annotated[
        str, Meta(description="When status last changed (RFC 3339).", extra={"k8s": "date-time"})
    ] = ""
    observed_generation: Annotated[
        int, Meta(ge=0, description="metadata.generation the condition was computed from.")
    ] = 0


class MCPServerStatus(msgspec.Struct, rename="camel", omit_defaults=True):
    """Observed state, written by the controller."""

    observed_generation: Annotated[
        int, Meta(description="The metadata.generation the controller last acted on.")
    ] = 0
    conditions: Annotated[
        list[Condition],
        Meta(description="Accepted, ResolvedRefs, Programmed and Ready.", extra={"k8s": "conditions"}),
    ] = field(default_factory=list)
    url: Annotated[str, Meta(description="In-cluster URL of the MCP endpoint.")] = ""


class ObjectMeta(msgspec.Struct, rename="camel", omit_defaults=True):
    """The parts of metav1.ObjectMeta kmcp reads; the apiserver adds more, which are ignored."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    deletion_timestamp: str | None = None


class MCPServer(msgspec.Struct, rename="camel", omit_defaults=True):
    """An MCP server deployed and served by kmcp."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: MCPServerSpec
    status: MCPServerStatus = field(default_factory=MCPServerStatus)

    @property
    def stdio(self) -> StdioTransport:
        return self.spec.stdio_transport or StdioTransport()


# ---------------------------------------------------------------------------------------------------------------
# The kmcp.yaml project file


class ToolConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A tool the project declares (kmcp add-tool keeps this list)."""

    description: str = ""


class SecretSource(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """Where one environment's secrets come from and which Secret they become."""

    enabled: bool = False
    provider: Literal["env", "kubernetes"] = "env"
    file: str = ".env"
    secret_name: str = ""
    namespace: str = ""


class ProjectFile(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """kmcp.yaml: what `kmcp init` writes and `kmcp deploy`/`run` read."""

    name: ObjectName
    framework: Literal["python", "go"]
    version: str = "0.1.0"
    description: str = ""
    author: str = ""
    email: str = ""
    tools: dict[str, ToolConfig] = field(default_factory=dict)
    secrets: dict[str, SecretSource] = field(default_factory=dict)
    command: str = ""
    args: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Decoding and validation


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, phrased for the person who wrote it."""

    path: str
    message: str
    reason: str = "InvalidSpec"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """A document that is not a valid MCPServer or kmcp.yaml; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _dotted(path: str) -> str:
    """`$.spec.args[0]` -> `spec.args[0]`."""
    return path.lstrip(".")


_PATH_PART = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+|\.\.\.)\]")


def _type_at(root: type, path: str) -> Any:
    """The msgspec type info of the field a msgspec error path points at (None when it cannot be followed)."""
    tp: Any = msgspec.inspect.type_info(root)
    for name, _index in _PATH_PART.findall(path):
        tp = _unwrap(tp)
        if name and isinstance(tp, msgspec.inspect.StructType):
            tp = next((f.type for f in tp.fields if f.encode_name == name), None)
        elif not name and isinstance(tp, msgspec.inspect.ListType):
            tp = tp.item_type
        elif not name and isinstance(tp, msgspec.inspect.DictType):
            tp = tp.value_type
        else:
            return None
        if tp is None:
            return None
    return _unwrap(tp)


def _enum_values(root: type, path: str) -> list[str] | None:
    """The allowed literal values of the field at a msgspec error path, for a message that lists them."""
    tp = _type_at(root, path)
    if isinstance(tp, msgspec.inspect.LiteralType):
        return [str(v) for v in tp.values]
    return None


def _name_map_keys(doc: Any, root: type, path: str) -> str:
    """msgspec writes `[...]` for a map key; find the key whose value fails so the message names it."""
    out, value, walked = "", doc, ""
    for match in _PATH_PART.finditer(path):
        name, index = match.groups()
        walked += match.group(0)
        if index == "...":
            if not isinstance(value, dict):
                return out + path[len(walked) - len(match.group(0)):]
            value_type = _type_at(root, walked)
            bad = next((k for k, v in value.items() if not _converts(v, value_type)), None)
            if bad is None:
                return out + path[len(walked) - len(match.group(0)):]
            out += f".{bad}"
            value = value[bad]
            continue
        out += match.group(0)
        key: Any = name if name else int(index)
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return out + path[len(walked):]
    return out


def _converts(value: Any, info: Any) -> bool:
    if info is None:
        return True
    if isinstance(info, msgspec.inspect.StructType):
        try:
            msgspec.convert(value, info.cls)
        except msgspec.ValidationError:
            return False
        return True
    scalars: dict[type, type] = {msgspec.inspect.StrType: str, msgspec.inspect.IntType: int,
                                 msgspec.inspect.BoolType: bool}
    python_type = scalars.get(type(info))
    if python_type is None:
        return True
    return isinstance(value, python_type) and not (python_type is int and isinstance(value, bool))


def _unwrap(tp: Any) -> Any:
    if isinstance(tp, msgspec.inspect.Metadata):
        tp = tp.type
    if isinstance(tp, msgspec.inspect.UnionType):
        real = [t for t in tp.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(real) == 1:
            return _unwrap(real[0])
    return tp


def _problem_from(error: msgspec.ValidationError, root: type, doc: Any) -> Problem:
    text = str(error)
    match = _MSGSPEC_PATH.search(text)
    path = match.group("path") if match else ""
    detail = text[: match.start()] if match else text
    where = _dotted(_name_map_keys(doc, root, path) if "[...]" in path else path)
    if m := re.match(r"Object missing required field `([^`]+)`", detail):
        return Problem(f"{where}.{m.group(1)}".lstrip("."), "required")
    if m := re.match(r"Object contains unknown field `([^`]+)`", detail):
        return Problem(f"{where}.{m.group(1)}".lstrip("."), "unknown field (check the spelling)")
    if detail.startswith("Invalid enum value"):
        values = _enum_values(root, path)
        if values:
            return Problem(where, "must be one of " + ", ".join(values))
    if m := re.match(r"Expected `\w+` (.+)$", detail):
        return Problem(where, f"must be {m.group(1)}")
    if m := re.match(r"Expected `(.+?)`, got `(.+?)`$", detail):
        return Problem(where, f"expected {m.group(1)}, got {m.group(2)}")
    return Problem(where or "(document)", detail[:1].lower() + detail[1:])


def decode_mcpserver(obj: Any) -> MCPServer:
    """Convert a YAML/JSON-loaded MCPServer into Structs, or raise SpecError naming the field at fault."""
    if not isinstance(obj, dict):
        raise SpecError([Problem("(document)", "expected a mapping (an MCPServer object)")])
    problems = []
    if obj.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"must be {API_VERSION}"))
    if obj.get("kind") != KIND:
        problems.append(Problem("kind", f"must be {KIND}"))
    if problems:
        raise SpecError(problems)
    try:
        return msgspec.convert(obj, MCPServer)
    except msgspec.ValidationError as error:
        raise SpecError([_problem_from(error, MCPServer, obj)]) from None


def decode_project(obj: Any) -> ProjectFile:
    """Convert a loaded kmcp.yaml into a ProjectFile, or raise SpecError."""
    if not isinstance(obj, dict):
        raise SpecError([Problem("(document)", "expected a mapping (a kmcp.yaml project)")])
    try:
        return msgspec.convert(obj, ProjectFile)
    except msgspec.ValidationError as error:
        raise SpecError([_problem_from(error, ProjectFile, obj)]) from None


_RESERVED_MOUNTS = (BRIDGE_PATH, CONFIG_PATH, SECRETS_PATH)


def env_name_problem(name: str, kube_version: tuple[int, int] | None = None) -> str | None:
    """Why the apiserver of ``kube_version`` (major, minor) would refuse ``name`` as an environment variable name,
    or None. The rule changed in 1.32, so the controller asks the apiserver it talks to; None means a current one
    (what ``kmcp validate`` checks against without a cluster)."""
    if kube_version is not None and kube_version < RELAXED_ENV_NAMES_SINCE:
        if not re.match(ENV_NAME, name) or name in (".", "..") or name.startswith(".."):
            return (f"not a valid environment variable name for Kubernetes {kube_version[0]}.{kube_version[1]}: "
                    "letters, digits, '_', '-' and '.', not starting with a digit or '..' (1.32 and later allow "
                    "any printable ASCII but '=')")
        return None
    if not name:
        return "an environment variable name must not be empty"
    if "=" in name:
        return "an environment variable name may not contain '=' (the environment holds NAME=VALUE)"
    if not all(" " <= char <= "~" for char in name):
        return "an environment variable name must be printable ASCII"
    return None


def semantic_problems(server: MCPServer, kube_version: tuple[int, int] | None = None) -> list[Problem]:
    """What the CRD schema admits but kmcp cannot run. Each becomes Accepted=False with its reason.
    ``kube_version`` is the apiserver's (major, minor), for the rules that changed between versions; None: a
    current one."""
    spec, dep = server.spec, server.spec.deployment
    problems: list[Problem] = []
    if spec.transport_type == "stdio" and dep.cmd is None:
        problems.append(Problem(
            "spec.deployment.cmd",
            "required for stdio: kmcp cannot read the image's ENTRYPOINT, so it needs the command to wrap "
            "(kmcp deploy fills it from kmcp.yaml)",
            "MissingCommand",
        ))
    if spec.transport_type == "http" and spec.http_transport is None:
        problems.append(Problem("spec.httpTransport", "required when transportType is http", "MissingHTTPTransport"))
    if dep.service_account is not None and dep.service_account_name is not None:
        problems.append(Problem(
            "spec.deployment.serviceAccountName", "mutually exclusive with serviceAccount", "InvalidSpec"
        ))
    for key in dep.env:
        reason = env_name_problem(key, kube_version)
        if reason is not None:
            problems.append(Problem(f"spec.deployment.env.{key}", reason))
    volume_names: list[str] = []
    for index, volume in enumerate(dep.volumes):
        name = volume.get("name")
        if not isinstance(name, str) or not re.match(DNS_LABEL, name):
            problems.append(Problem(f"spec.deployment.volumes[{index}].name", "required, a DNS label"))
            continue
        if name in volume_names:
            problems.append(Problem(f"spec.deployment.volumes[{index}].name", f"duplicate volume {name!r}"))
        if name == BRIDGE_VOLUME or name.startswith(RESERVED_VOLUME_PREFIX):
            problems.append(Problem(f"spec.deployment.volumes[{index}].name", f"{name!r} is reserved by kmcp"))
        volume_names.append(name)
    for index, mount in enumerate(dep.volume_mounts):
        where = f"spec.deployment.volumeMounts[{index}]"
        if mount.name not in volume_names:
            problems.append(Problem(f"{where}.name", f"no volume named {mount.name!r} in spec.deployment.volumes"))
        if not mount.mount_path.startswith("/"):
            problems.append(Problem(f"{where}.mountPath", "must be an absolute path"))
        elif any(mount.mount_path.rstrip("/") == p or mount.mount_path.startswith(p + "/") for p in _RESERVED_MOUNTS):
            problems.append(Problem(f"{where}.mountPath", f"{mount.mount_path} is reserved by kmcp"))
    for field_name, refs in (("secretRefs", dep.secret_refs), ("configMapRefs", dep.config_map_refs)):
        seen: set[str] = set()
        for index, ref in enumerate(refs):
            if ref.name in seen:
                problems.append(Problem(f"spec.deployment.{field_name}[{index}].name", f"duplicate {ref.name!r}"))
            seen.add(ref.name)
    return problems


def validated(obj: Any) -> MCPServer:
    """Decode and check everything the controller would: the single entry point for the CLI."""
    server = decode_mcpserver(obj)
    problems = semantic_problems(server)
    if problems:
        raise SpecError(problems)
    return server
