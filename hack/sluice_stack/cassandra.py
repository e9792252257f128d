"""A real single-node Apache Cassandra, run from its Maven Central jars as a local process on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from string import Template

from .config import HACK_DIR, VERSIONS, component_dir
from .jvm import fetch_jars, java
from .process import Service, free_port

FILES = HACK_DIR / "cassandra"  # pom.xml, cassandra.yaml (a template), logback.xml, jvm17.options
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"


def provision() -> Path:
    """Returns component_dir("cassandra"), with cassandra-all and its dependencies in lib/ (fetched once)."""
    lib = component_dir("cassandra") / "lib"
    return fetch_jars("cassandra", FILES / "pom.xml", f"-Dcassandra.version={VERSIONS['CASSANDRA_VERSION']}",
                      f"-Dlib.dir={lib}")  # fmt: skip


def make_service(root: Path) -> Service:
    """A Cassandra on free local ports with its config and data under `root/data/cassandra`; not started.

    Starting the returned Service again after a kill reuses the same data, as a restarted node would.
    """
    lib = provision() / "lib"
    root = root.resolve()  # the argv and the config must not depend on the cwd
    data = root / "data" / "cassandra"
    for sub in ("triggers", "tmp"):  # Cassandra warns about a missing triggers dir; tmp gets lz4's native lib
        (data / sub).mkdir(parents=True, exist_ok=True)
    native_port = free_port()
    storage_port = free_port()
    while storage_port == native_port:
        storage_port = free_port()
    config = data / "cassandra.yaml"
    template = Template((FILES / "cassandra.yaml").read_text())
    config.write_text(template.substitute(native_port=native_port, storage_port=storage_port, dir=data))

    jamm = next(lib.glob("jamm-*.jar"))  # the object-size agent Cassandra measures memtables with
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
    return Service(
        name="cassandra",
        argv=argv,
        log_path=str(root / "logs" / "cassandra.log"),
        cwd=str(data),
        endpoints={"contact_point": f"127.0.0.1:{native_port}"},
    )


def is_ready(service: Service) -> bool:
    """True once the node answers CQL: connects with cassandra-driver and reads system.local."""
    # Imported here: the stack's other commands do not need the driver.
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    host, _, port = service.endpoints["contact_point"].rpartition(":")
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]), request_timeout=5)
    cluster = Cluster(
        [host],
        port=int(port),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=2,
        control_connection_timeout=2,
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
