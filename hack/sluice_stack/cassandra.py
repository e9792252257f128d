"""Apache Cassandra from its Maven Central jars as local processes: one node on 127.0.0.1, or a ring on 127.0.0.1-N."""

from __future__ import annotations

import socket
from pathlib import Path
from string import Template

from .config import HACK_DIR, VERSIONS, component_dir
from .jvm import fetch_jars, java
from .process import Service, free_port

FILES = HACK_DIR / "cassandra"  # pom.xml, cassandra.yaml (a template), logback.xml, jvm17.options
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"

# The secured node (`cassandra-secure`, beside the plain one the other tests use: password authentication is
# cluster-wide, so it cannot share a ring with them): TLS only, from the stack's PEM certificates, and a login.
SECURE_NAME = "cassandra-secure"
LOGIN = ("cassandra", "cassandra")  # the superuser PasswordAuthenticator creates
PLAIN_AUTHENTICATOR = "authenticator: AllowAllAuthenticator\n"


def _secured(config: str, tls: Path) -> str:
    """cassandra.yaml of the secured node: the template's settings with a password and TLS-only CQL."""
    if PLAIN_AUTHENTICATOR not in config:
        raise RuntimeError(f"hack/cassandra/cassandra.yaml no longer says {PLAIN_AUTHENTICATOR!r}: update {__file__}")
    return config.replace(PLAIN_AUTHENTICATOR, "authenticator: PasswordAuthenticator\n") + (
        "client_encryption_options:\n"
        "  enabled: true\n"
        "  optional: false\n"
        "  ssl_context_factory:\n"
        "    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory\n"
        f"  keystore: {tls / 'server.pem'}\n"
        f"  truststore: {tls / 'ca.crt'}\n"
        "  require_client_auth: false\n"
    )


def provision() -> Path:
    """Returns component_dir("cassandra"), with cassandra-all and its dependencies in lib/ (fetched once)."""
    lib = component_dir("cassandra") / "lib"
    return fetch_jars("cassandra", FILES / "pom.xml", f"-Dcassandra.version={VERSIONS['CASSANDRA_VERSION']}",
                      f"-Dlib.dir={lib}")  # fmt: skip


def make_service(root: Path) -> Service:
    """A single Cassandra on free local ports with its config and data under `root/data/cassandra`; not started.

    Starting the returned Service again after a kill reuses the same data, as a restarted node would.
    """
    (service,) = make_services(root, 1)
    return service


def make_secure_service(root: Path) -> Service:
    """The secured node: TLS with the stack's certificates (`root/tls`) and PasswordAuthenticator; not started."""
    from .tls import make_certificates

    tls = make_certificates(root.resolve() / "tls")
    (service,) = make_services(root, 1, name=SECURE_NAME, tls=tls)
    service.endpoints["tls_dir"] = str(tls)
    service.argv.insert(1, "-Dcassandra.superuser_setup_delay_ms=0")  # the login exists as soon as CQL answers
    return service


def make_services(root: Path, nodes: int, name: str = "cassandra", tls: Path | None = None) -> list[Service]:
    """`nodes` Cassandra nodes forming one ring (`cassandra`, or `cassandra-1`... on 127.0.0.1, 127.0.0.2, ...:
    the whole of 127/8 is loopback), with the same ports each, data under `root/data/<name>`; not started. The
    first node is the seed; start them one after another. Each keeps its data across a kill and a start."""
    lib = provision() / "lib"
    root = root.resolve()  # the argv and the config must not depend on the cwd
    addresses = [f"127.0.0.{n}" for n in range(1, nodes + 1)]
    native_port, storage_port = _ports_free_on(addresses)
    names = [name] if nodes == 1 else [f"{name}-{n}" for n in range(1, nodes + 1)]
    template = Template((FILES / "cassandra.yaml").read_text())
    jamm = next(lib.glob("jamm-*.jar"))  # the object-size agent Cassandra measures memtables with
    services = []
    for node, (node_name, address) in enumerate(zip(names, addresses, strict=True)):
        data = root / "data" / node_name
        for sub in ("triggers", "tmp"):  # Cassandra warns about a missing triggers dir; tmp gets lz4's native lib
            (data / sub).mkdir(parents=True, exist_ok=True)
        config = data / "cassandra.yaml"
        settings = template.substitute(
            native_port=native_port, storage_port=storage_port, dir=data, address=address,
            seed=addresses[0], initial_token=_token(node, nodes),
        )  # fmt: skip
        config.write_text(_secured(settings, tls) if tls else settings)
        argv = [
            java(),
            *_jvm_options(),
            f"-javaagent:{jamm}",
            f"-Dcassandra.config={config.as_uri()}",
            f"-Dcassandra.storagedir={data}",
            f"-Dcassandra.triggers_dir={data / 'triggers'}",
            f"-Djava.io.tmpdir={data / 'tmp'}",
            f"-Dlogback.configurationFile={FILES / 'logback.xml'}",
            "-cp",
            f"{lib}/*",
            MAIN_CLASS,
        ]
        services.append(Service(
            name=node_name, argv=argv, log_path=str(root / "logs" / f"{node_name}.log"), cwd=str(data),
            endpoints={"contact_point": f"{address}:{native_port}"},
        ))  # fmt: skip
    return services


def _token(node: int, nodes: int) -> int:
    """The one token of node `node` (from 0) of `nodes`: evenly spread over Murmur3's range."""
    return -(2**63) + node * (2**64 // nodes)


def _ports_free_on(addresses: list[str]) -> tuple[int, int]:
    """Two distinct ports that nothing listens on at any of `addresses`."""
    ports: list[int] = []
    while len(ports) < 2:
        port = free_port()
        if port in ports:
            continue
        try:
            for address in addresses[1:]:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        ports.append(port)
    return ports[0], ports[1]


def is_ready(service: Service) -> bool:
    """True once the node answers CQL: connects with cassandra-driver and reads system.local."""
    # Imported here: the stack's other commands do not need the driver.
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    host, _, port = service.endpoints["contact_point"].rpartition(":")
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]), request_timeout=5)
    secured = {}
    if "tls_dir" in service.endpoints:  # the secured node: its CA and the superuser's login
        import ssl

        from cassandra.auth import PlainTextAuthProvider

        context = ssl.create_default_context(cafile=str(Path(service.endpoints["tls_dir"]) / "ca.crt"))
        secured = {"ssl_context": context, "auth_provider": PlainTextAuthProvider(*LOGIN)}
    cluster = Cluster(
        [host],
        port=int(port),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=2,
        control_connection_timeout=2,
        **secured,
    )
    try:
        return cluster.connect().execute("SELECT release_version FROM system.local").one() is not None
    finally:
        cluster.shutdown()


def _jvm_options() -> list[str]:
    """The flags of hack/cassandra/jvm17.options, without comments; `--opt value` lines become two args."""
    options = []
    for line in (FILES / "jvm17.options").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        options.extend(line.split())
    return options
