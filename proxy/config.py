"""The gateway's configuration: frozen msgspec Structs, read once at start-up.

A config file is YAML (``.yaml``/``.yml``) or JSON (``.json``). Before decoding, every string
value has ``${VAR}`` and ``${VAR:-default}`` replaced from the environment; an unset ``${VAR}``
becomes the empty string, so that an example config naming optional keys still starts (a provider
whose keys are all empty is then reported as unavailable).

Every mistake in a file fails start-up with one :class:`ConfigError` that names the file, the key
path and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "AuthConfig",
    "ConfigError",
    "GatewayConfig",
    "KeyConfig",
    "LoggingConfig",
    "ModelPrice",
    "ProviderConfig",
    "ServerConfig",
    "StateConfig",
    "StoreConfig",
    "StreamingConfig",
    "UsageConfig",
    "config_from_env",
    "load_config",
    "parse_store_url",
    "substitute_env",
]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ServerConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # In-flight requests and streams get this long to finish after SIGTERM/SIGINT.
    drain_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0


class AuthConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Empty: inference routes need no key (a sidecar on loopback) until virtual keys exist; the
    # admin API of keys and teams needs it.
    master_key: str = ""
    # How long an instance trusts what it read of a virtual key (a change made through another
    # instance takes effect on this one within this time; one made here, at once).
    key_cache_ttl_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0


class StateConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where rate-limit and budget counters live: empty for this process's memory (one
    instance), or ``redis://host:port/db`` (``rediss://`` for TLS) shared by every instance."""

    url: str = ""
    # The most connections to Redis one instance opens (requests wait for a free one).
    pool_size: Annotated[int, msgspec.Meta(ge=1)] = 50
    # When the counters cannot be reached: refuse requests with 503 (false), or let them
    # through uncounted (true).
    fail_open: bool = False
    # A request's cost is reserved at admission from its input size and its output limit
    # (``max_tokens`` and the like); a request without one is assumed to write this many.
    default_output_tokens: Annotated[int, msgspec.Meta(ge=1)] = 4096


class LoggingConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    # Log lines are written to a buffer flushed this often (0: flush every line).
    flush_interval_s: float = 0.2


class StreamingConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # A `: keep-alive` SSE comment goes out when the upstream has been silent this long.
    keepalive_interval_s: float = 10.0


class StoreConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Where the gateway keeps stored responses, background jobs and conversations:
    # ``sqlite:///relative/path`` (from the working directory), ``sqlite:////absolute/path``,
    # ``sqlite://:memory:`` (tests), or a libpq-style ``postgresql://`` / ``postgres://`` URL.
    url: str = "sqlite:///./data/thruway.db"
    # PostgreSQL only: the most connections one gateway instance opens.
    pool_size: int = 10
    # Background responses: how many one instance runs at once; how long a claim on one lasts
    # unless renewed (a crashed instance's work is taken over when it ends); how many times one
    # is started before it is failed; how often idle instances look for queued work.
    background_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 8
    lease_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    poll_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0


_Positive = Annotated[float, msgspec.Meta(gt=0)]


class UsageConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Usage records (one per request, in the store): a background writer inserts them in
    batches of up to ``batch_size``, at least every ``flush_interval_s``. At most
    ``queue_size`` wait in memory (while the store is down, say); past that the oldest are
    dropped, counted and logged. ``log_content: true`` also stores prompts and completions."""

    queue_size: Annotated[int, msgspec.Meta(ge=1)] = 10000
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 500
    flush_interval_s: _Positive = 1.0
    # At shutdown, the longest the writer keeps retrying a store that fails before it gives
    # up on what is still queued (logged with the count).
    shutdown_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    log_content: bool = False
    # Records older than this many days are deleted (each instance looks once an hour);
    # 0 keeps them all. Budgets read the current period's records: keep at least a period.
    retention_days: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class KeyConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    value: str
    weight: float = 1.0
    models: tuple[str, ...] = ("*",)


class RetryConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retries of one target before the next fallback: only retryable failures (connection
    errors, timeouts, 408, 429, 5xx, 529, throttling), with exponential backoff and full
    jitter; an upstream's ``Retry-After``/``retry-after-ms`` is honoured up to ``max_after_s``."""

    max_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    initial_ms: _Positive = 200.0
    max_ms: _Positive = 5000.0
    max_after_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0


class BreakerConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The circuit breaker of each provider+key+model: open after ``failures`` consecutive
    failures, or when at least ``min_requests`` in the last ``window_s`` failed at a rate of
    ``error_rate`` or more; after ``cooldown_s`` one probe is let through (half-open), and its
    success closes it. ``enabled: false`` turns it off."""

    enabled: bool = True
    failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    error_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    min_requests: Annotated[int, msgspec.Meta(ge=1)] = 20
    window_s: _Positive = 30.0
    cooldown_s: _Positive = 15.0


class ProviderConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # The wire format; defaults to the provider's own name when that is a known provider.
    type: str | None = None
    keys: tuple[KeyConfig, ...] | None = None
    base_url: str | None = None
    # Timeouts of one attempt. ``timeout_s``: the whole of a JSON answer; for a stream, the
    # default of ``idle_timeout_s``. ``headers_timeout_s``: until the response headers arrive;
    # ``first_token_timeout_s``: until a stream's first event; ``idle_timeout_s``: the longest
    # silence between events; ``stream_timeout_s``: a whole stream. None: not limited beyond
    # ``timeout_s``.
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    headers_timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    stream_timeout_s: float | None = None
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    # A key that answers 401/403 leaves the rotation for this long (logged, without the key).
    key_cooldown_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    # Bounded load: at most ``max_in_flight`` requests at once to this provider (None: no
    # limit), ``max_queue`` more waiting at most ``queue_timeout_ms`` each; past that, a 503
    # ``overloaded`` with ``Retry-After`` at once (and the next fallback).
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_queue: Annotated[int, msgspec.Meta(ge=0)] = 0
    queue_timeout_ms: _Positive = 1000.0
    headers: dict[str, str] = {}
    # Models listed by /v1/models in addition to (or, when the upstream has no list, instead of)
    # the upstream's own list.
    models: tuple[str, ...] = ()
    models_cache_ttl_s: float = 300.0
    # Where a provider's API lives, for those that need it: an AWS region (Bedrock), a Google
    # Cloud location (Vertex AI); and the Google Cloud project (Vertex AI).
    region: str | None = None
    project: str | None = None
    # The API version a provider's requests name (Azure's ``api-version``, Anthropic's
    # ``anthropic-version``); each provider has a default.
    api_version: str | None = None
    # Model name callers use -> the upstream's own id for it (an Azure deployment, a Bedrock
    # inference profile or ARN). A model not listed is sent as named.
    deployments: dict[str, str] = {}
    # Credentials other than API keys, checked by the provider type (a Google service-account
    # file, AWS access keys, an Entra ID client); values may use ${VAR}.
    credentials: dict[str, str] = {}


_Price = Annotated[float, msgspec.Meta(ge=0)]


class ModelPrice(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A model's prices in USD per million tokens. ``cached_input`` (prompt tokens read from the
    provider's cache) defaults to ``input``; ``reasoning`` (completion tokens spent thinking)
    to ``output``."""

    input: _Price
    output: _Price
    cached_input: _Price | None = None
    reasoning: _Price | None = None


class RouteTarget(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model: str  # provider/model
    weight: _Positive = 1.0


class RouteConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A model name callers may use (``model: "smart"``) for a set of targets: one is picked
    by ``strategy`` for each request, the others and then ``fallbacks`` are its fallbacks.

    ``weighted``: at random by weight; ``least-latency``: the lowest moving average of time
    to first byte; ``least-busy``: the fewest requests in flight; ``ordered``: in the order
    listed. ``hedge_after_ms`` (or ``hedge: p95``, the target's observed 95th percentile of
    time to first byte): when the first attempt has sent no first byte by then, a second one
    starts on the next target and the first to answer wins.
    """

    targets: tuple[RouteTarget, ...]
    strategy: Literal["weighted", "least-latency", "least-busy", "ordered"] = "weighted"
    fallbacks: tuple[str, ...] = ()
    hedge_after_ms: _Positive | None = None
    hedge: Literal["p95"] | None = None


class GatewayConfig(_Frozen, frozen=True, kw_only=True, forbid_unknown_fields=True):
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    logging: LoggingConfig = LoggingConfig()
    streaming: StreamingConfig = StreamingConfig()
    store: StoreConfig = StoreConfig()
    state: StateConfig = StateConfig()
    usage: UsageConfig = UsageConfig()
    providers: dict[str, ProviderConfig] = {}
    routes: dict[str, RouteConfig] = {}
    # ``provider/model`` -> its prices, over the price table shipped with the gateway.
    pricing: dict[str, ModelPrice] = {}
    # Where the configuration came from, for messages; not a key of the file.
    source: str = "<defaults>"


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(value: Any, env: Mapping[str, str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a decoded document."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            got = env.get(m.group(1))
            if got:
                return got
            return m.group(2) if m.group(2) is not None else ""

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, env) for v in value]
    return value


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc


def _describe(exc: msgspec.ValidationError) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.server.port`" as "at $.server.port: ..."."""
    text = str(exc)
    what, sep, where = text.rpartition(" - at ")
    if not sep:
        return text
    return f"at {where.strip('`')}: {what}"


def _name_provider(
    document: dict[str, Any], exc: msgspec.ValidationError
) -> msgspec.ValidationError:
    """msgspec reports an error inside a mapping's value as ``$.providers[...]``; find which
    provider (or route, or price) it was by checking each alone, so the message can say
    ``$.providers.openai``."""
    sections: tuple[tuple[str, type[_Frozen]], ...] = (
        ("providers", ProviderConfig),
        ("routes", RouteConfig),
        ("pricing", ModelPrice),
    )
    for section, kind in sections:
        if f"`$.{section}[...]" not in str(exc) or not isinstance(document.get(section), dict):
            continue
        for name, value in document[section].items():
            try:
                msgspec.convert(value, kind, strict=False)
            except msgspec.ValidationError as inner:
                text = str(inner)
                if " - at `$" in text:
                    text = text.replace(" - at `$", f" - at `$.{section}.{name}", 1)
                else:
                    text += f" - at `$.{section}.{name}`"
                return msgspec.ValidationError(text)
    return exc


def build_config(document: Any, *, source: str) -> GatewayConfig:
    """Decode a document (already env-substituted) into a checked :class:`GatewayConfig`."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: at $: expected a mapping at the top level")
    document = {**document, "source": source}
    try:
        config = msgspec.convert(document, GatewayConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(_name_provider(document, exc))}") from exc
    _check(config)
    return config


def parse_store_url(url: str) -> tuple[Literal["sqlite", "postgresql"], str] | None:
    """``("sqlite", path)`` (``:memory:`` or a path as written), ``("postgresql", url)``, or None
    when the URL is neither."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    if url == "sqlite://:memory:":
        return "sqlite", ":memory:"
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        # sqlite:///a/b -> "a/b" (relative); sqlite:////a/b -> "/a/b" (absolute).
        return "sqlite", url[len("sqlite:///") :]
    return None


def _check(config: GatewayConfig) -> None:
    where = config.source
    if not 0 <= config.server.port <= 65535:
        raise ConfigError(f"{where}: at $.server.port: expected a port from 0 to 65535")
    if config.server.max_body_bytes < 1024:
        raise ConfigError(f"{where}: at $.server.max_body_bytes: expected at least 1024")
    if config.streaming.keepalive_interval_s <= 0:
        raise ConfigError(
            f"{where}: at $.streaming.keepalive_interval_s: expected a positive number"
        )
    # The URL is never echoed: a PostgreSQL URL may carry a password.
    if parse_store_url(config.store.url) is None:
        raise ConfigError(
            f"{where}: at $.store.url: expected sqlite:///relative/path, "
            "sqlite:////absolute/path, sqlite://:memory: or a postgresql:// URL"
        )
    if config.store.pool_size < 1:
        raise ConfigError(f"{where}: at $.store.pool_size: expected at least 1")
    for name, provider in config.providers.items():
        at = f"{where}: at $.providers.{name}"
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
            raise ConfigError(
                f"{at}: a provider name is lower-case letters, digits, '-', '_' or '.'"
            )
        if provider.timeout_s <= 0 or provider.connect_timeout_s <= 0:
            raise ConfigError(f"{at}: timeouts must be positive numbers of seconds")
        if provider.base_url is not None and not re.match(r"https?://", provider.base_url):
            raise ConfigError(f"{at}.base_url: expected an http:// or https:// URL")
        for i, key in enumerate(provider.keys or ()):
            if key.weight <= 0:
                raise ConfigError(f"{at}.keys[{i}].weight: expected a positive number")
    for name, route in config.routes.items():
        _check_route(config, name, route)
    for priced in config.pricing:
        owner, sep, model = priced.partition("/")
        if not sep or not owner or not model:
            raise ConfigError(
                f"{where}: at $.pricing: expected `provider/model` keys, got `{priced}`"
            )


def _check_route(config: GatewayConfig, name: str, route: RouteConfig) -> None:
    at = f"{config.source}: at $.routes.{name}"
    if not route.targets:
        raise ConfigError(f"{at}.targets: a route needs at least one target")
    if route.hedge is not None and route.hedge_after_ms is not None:
        raise ConfigError(f"{at}: set `hedge_after_ms` or `hedge`, not both")
    named = [(f"targets[{i}].model", t.model) for i, t in enumerate(route.targets)]
    named += [(f"fallbacks[{i}]", f) for i, f in enumerate(route.fallbacks)]
    for where, model in named:
        provider, sep, rest = model.partition("/")
        if not sep or not provider or not rest:
            raise ConfigError(f"{at}.{where}: expected `provider/model`, got `{model}`")
        if config.providers and provider not in config.providers:
            known = ", ".join(sorted(config.providers))
            raise ConfigError(f"{at}.{where}: unknown provider `{provider}` (configured: {known})")


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read, substitute and check a config file; raise :class:`ConfigError` on any mistake."""
    p = Path(path)
    document = substitute_env(_read_document(p), os.environ if env is None else env)
    return build_config(document, source=str(p))


def config_from_env(
    standard_keys: Mapping[str, str],
    local_urls: Mapping[str, str],
    env: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """The configuration used with no file: each provider whose standard key variable is set,
    and each local server whose base-URL variable is set.

    ``standard_keys`` maps a provider name to its key variable (``{"groq": "GROQ_API_KEY"}``),
    ``local_urls`` a keyless local server to its URL variable (``{"ollama": "OLLAMA_BASE_URL"}``).
    """
    env = os.environ if env is None else env
    providers: dict[str, Any] = {
        name: {"keys": [{"value": env[var]}]} for name, var in standard_keys.items() if env.get(var)
    }
    providers.update(
        {name: {"base_url": env[var]} for name, var in local_urls.items() if env.get(var)}
    )
    document: dict[str, Any] = {"providers": providers}
    if env.get("THRUWAY_MASTER_KEY"):
        document["auth"] = {"master_key": env["THRUWAY_MASTER_KEY"]}
    return build_config(document, source="<environment>")
