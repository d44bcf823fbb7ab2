"""A real single-node Apache Kafka broker (KRaft) from Maven Central, on 127.0.0.1.

Used by the integration tests' session fixture and by ``scripts/kafka-local`` for
development. The jars are fetched once with ``mvn dependency:copy-dependencies`` into
a cache (``$SW_KAFKA_CACHE``, default ``~/.cache/streamwatch/kafka``).

    python -m tests.kafka_local         # start, print the bootstrap address, run until ^C
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).resolve().parents[1] / "scripts" / "kafka" / "pom.xml"
CACHE = Path(os.environ.get("SW_KAFKA_CACHE", "~/.cache/streamwatch/kafka")).expanduser()

LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
"""


def fetch_jars() -> Path:
    """The broker's jars, downloaded on first use and cached by version."""
    libs = CACHE / KAFKA_VERSION
    if (libs / ".complete").exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed to fetch the Kafka broker jars")
    partial = Path(
        tempfile.mkdtemp(prefix="kafka-jars-", dir=CACHE.parent if CACHE.parent.exists() else None)
    )
    maven = ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
    fetched = subprocess.run(
        [
            *maven,
            f"-Dkafka.version={KAFKA_VERSION}",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ],
        capture_output=True,
        check=False,
    )
    if fetched.returncode != 0:
        raise RuntimeError(f"mvn could not fetch the Kafka jars:\n{fetched.stdout.decode()}")
    (partial / ".complete").touch()
    libs.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One KRaft node acting as broker and controller, stopped with :meth:`stop`."""

    def __init__(
        self,
        workdir: Path | None = None,
        message_max_bytes: int = 16 << 20,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kafka-"))
        self.port = free_port()
        self.controller_port = free_port()
        self.message_max_bytes = message_max_bytes
        self.properties = dict(properties or {})  # more of server.properties
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> Broker:
        config = self._write_config()
        subprocess.run(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                "--config",
                str(config),
                "--cluster-id",
                str(uuid.uuid4()).replace("-", "")[:22],
                "--standalone",
            ],
            check=True,
            capture_output=True,
        )
        self._launch(config, timeout)
        return self

    def restart(self, timeout: float = 90.0) -> Broker:
        """Start again on the same data directory and ports (after :meth:`kill`)."""
        assert self.process is None, "the broker is still running"
        self._launch(self.workdir / "server.properties", timeout)
        return self

    def _java(self) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-cp",
            f"{fetch_jars()}/*",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
        ]

    def _launch(self, config: Path, timeout: float) -> None:
        with (self.workdir / "broker.out").open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [*self._java(), "kafka.Kafka", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        self._wait(timeout)

    def _write_config(self) -> Path:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(
            LOG4J.format(log=self.workdir / "broker.log")
        )
        config = self.workdir / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    f"message.max.bytes={self.message_max_bytes}",
                    f"replica.fetch.max.bytes={self.message_max_bytes}",
                    "auto.create.topics.enable=true",
                    *(f"{key}={value}" for key, value in self.properties.items()),
                ]
            )
            + "\n"
        )
        return config

    def _wait(self, timeout: float) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        # First the port (cheap, and no client is left half-open), then the protocol.
        while not self._port_open():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the broker exited; see {self.workdir / 'broker.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the broker did not listen within {timeout:.0f} s")
            time.sleep(0.3)
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            while True:
                try:
                    admin.list_topics()
                    return
                except KafkaError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise
                    time.sleep(0.3)
        finally:
            admin.close()

    def _port_open(self) -> bool:
        with socket.socket() as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the broker dies at once, with no controlled shutdown; what it had
        written stays in the data directory (the page cache outlives the process)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP), as if the network had gone."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def main() -> None:
    # Blocked, so that sigwait takes them: unblocked, SIGTERM would end Python before
    # broker.stop() and orphan the JVM.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    broker = Broker().start()
    print(f"Kafka {KAFKA_VERSION} at {broker.bootstrap} (data and logs in {broker.workdir})")
    print("export STREAMWATCH_KAFKA__BOOTSTRAP_SERVERS=" + broker.bootstrap, flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
