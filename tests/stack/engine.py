"""A local container engine for the stack, where no Docker engine runs and no registry can be
reached: Debian's podman serves the Docker API on a unix socket of its own, Debian's
docker-compose drives it, and the base images are built from Debian packages.

Everything lives in one state directory (storage, networks, volumes, the socket), so the
machine's own services and any other podman use are left alone; `stop()` removes it all.

    python -m tests.stack.engine images      # base images only (debootstrap, wheelhouse)
    python -m tests.stack.engine serve       # serve until Ctrl-C; prints the variables that
                                             # point docker-compose and podman at it
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(__file__).resolve().parent / "images"
DEBIAN_IMAGE = "localhost/ml-api-stack/debian:bookworm"
PYTHON_IMAGE = "localhost/ml-api-stack/python:3.11"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PACKAGES = {"podman": "podman", "debootstrap": "debootstrap", "docker-compose": "docker-compose",
            "runc": "runc"}
# Debian's Python is 3.11.2; redis-py asks for async-timeout below 3.11.3, which a wheelhouse
# resolved by the host's newer 3.11 leaves out.
WHEELHOUSE_EXTRAS = ["async-timeout>=4.0.3"]
HEALTH_TICK_SECONDS = 2.0


def log(message: str) -> None:
    print(f"[engine] {message}", file=sys.stderr, flush=True)


def ensure_packages() -> None:
    """Install podman, debootstrap, docker-compose and runc from Debian when missing (root)."""
    missing = [pkg for cmd, pkg in PACKAGES.items() if not shutil.which(cmd)]
    if not missing:
        return
    log(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True,
                   capture_output=True, env=env)


def wheelhouse_requirements() -> list[str]:
    """What the images pip-install: the API's pinned dependencies, Locust's pin, setuptools."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    locust = [r for r in project["project"]["optional-dependencies"]["test"]
              if r.startswith("locust")]
    build = project["build-system"]["requires"]
    return [*project["project"]["dependencies"], *locust, *build, *WHEELHOUSE_EXTRAS]


class Engine:
    """podman behind a Docker API socket, with its state under `state`."""

    def __init__(self, state: Path):
        self.state = Path(state).resolve()
        self.socket = self.state / "podman.sock"
        self._service: subprocess.Popen | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def env(self) -> dict[str, str]:
        """The environment for podman and docker-compose to use this engine."""
        return {**os.environ,
                "CONTAINERS_CONF": str(self.state / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(self.state / "storage.conf"),
                "DOCKER_HOST": f"unix://{self.socket}",
                # HEALTHCHECK exists in the Docker image format only.
                "BUILDAH_FORMAT": "docker"}

    def _write_config(self) -> None:
        s = self.state
        for folder in ("storage", "run", "networks", "volumes", "tmp"):
            (s / folder).mkdir(parents=True, exist_ok=True)
        # default_ulimits = []: setting rlimits in a container is not permitted in this sandbox.
        # runc: crun refuses this host's hybrid cgroup layout.
        (s / "containers.conf").write_text(f"""\
[containers]
default_ulimits = []
[network]
network_backend = "netavark"
network_config_dir = "{s / 'networks'}"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{s / 'events.log'}"
tmp_dir = "{s / 'tmp'}"
volume_path = "{s / 'volumes'}"
""")
        (s / "storage.conf").write_text(f"""\
[storage]
driver = "overlay"
graphroot = "{s / 'storage'}"
runroot = "{s / 'run'}"
""")

    def podman(self, *args: str, check: bool = True, timeout: float = 600,
               **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], env=self.env, check=check, timeout=timeout,
                              capture_output=True, text=True, **kwargs)

    def start(self) -> None:
        """Configure podman and serve the Docker API on this engine's socket."""
        ensure_packages()
        self._write_config()
        self.socket.unlink(missing_ok=True)
        self._service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self.env, stdout=open(self.state / "service.log", "ab"),
            stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(100):
            if self.socket.exists() and self.podman("--url", f"unix://{self.socket}",
                                                    "version", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"podman's API did not come up; see {self.state}/service.log")
        self._stopping.clear()
        self._ticker = threading.Thread(target=self._tick_healthchecks, daemon=True)
        self._ticker.start()

    def _tick_healthchecks(self) -> None:
        """podman schedules healthchecks with systemd timers, and no systemd runs here: run
        every running container's healthcheck each tick instead, so `depends_on:
        condition: service_healthy` and `docker-compose ps` see real health states."""
        while not self._stopping.wait(HEALTH_TICK_SECONDS):
            listed = self.podman("ps", "-q", check=False, timeout=30)
            checks = [subprocess.Popen(["podman", "healthcheck", "run", cid], env=self.env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for cid in listed.stdout.split()]
            for check in checks:
                try:
                    check.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    check.kill()

    def has_image(self, name: str) -> bool:
        return self.podman("image", "exists", name, check=False).returncode == 0

    def base_images(self) -> None:
        """Debian bookworm from debootstrap, and a Python 3.11 image carrying a wheelhouse
        (built on the host meanwhile)."""
        context = self.state / "python-base"
        wheelhouse = None
        if not self.has_image(PYTHON_IMAGE):
            (context / "wheels").mkdir(parents=True, exist_ok=True)
            log("wheelhouse for the images")
            wheelhouse = subprocess.Popen(
                [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(context / "wheels"),
                 *wheelhouse_requirements()],
                stdout=subprocess.DEVNULL, stderr=open(self.state / "wheelhouse.log", "wb"))
        if not self.has_image(DEBIAN_IMAGE):
            self._debian_image()
        if wheelhouse is not None:
            if wheelhouse.wait(timeout=900) != 0:
                raise RuntimeError(f"pip wheel failed; see {self.state}/wheelhouse.log")
            log("python base image")
            self.podman("build", "--format", "docker", "-q", "-f",
                        str(IMAGES / "python" / "Dockerfile"),
                        "--build-arg", f"DEBIAN_IMAGE={DEBIAN_IMAGE}", "-t", PYTHON_IMAGE,
                        str(context))
            shutil.rmtree(context)

    def _debian_image(self) -> None:
        rootfs = self.state / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        log("debootstrap bookworm (minbase)")
        subprocess.run(["debootstrap", "--variant=minbase", "--include=ca-certificates",
                        "bookworm", str(rootfs), DEBIAN_MIRROR],
                       check=True, capture_output=True, timeout=900)
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "--change", 'CMD ["bash"]', "-", DEBIAN_IMAGE],
                       stdin=tar.stdout, env=self.env, check=True, capture_output=True)
        tar.wait()
        shutil.rmtree(rootfs)

    def stop(self, keep_images: bool = False) -> None:
        """Stop every container; unless `keep_images`, remove the whole state directory."""
        self._stopping.set()
        if self._ticker:
            self._ticker.join(timeout=35)
        self.podman("rm", "-a", "-f", "-t", "5", check=False)
        if not keep_images:
            self.podman("system", "reset", "-f", check=False)
        if self._service and self._service.poll() is None:
            self._service.terminate()
            try:
                self._service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._service.kill()
        # podman 4 can leave the conmon of a healthcheck that ran while its container stopped;
        # every process of this engine names its state directory.
        subprocess.run(["pkill", "-f", f"{self.state}/"], check=False)
        if not keep_images:
            shutil.rmtree(self.state, ignore_errors=True)


def main(argv: list[str]) -> int:
    engine = Engine(Path(os.environ.get("STACK_STATE_DIR", ROOT / ".stack")))
    if argv[:1] == ["images"]:
        engine.start()
        try:
            engine.base_images()
        finally:
            engine.stop(keep_images=True)
        return 0
    if argv[:1] == ["serve"]:
        engine.start()
        engine.base_images()
        for key in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "DOCKER_HOST"):
            print(f"export {key}={engine.env[key]}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            engine.stop(keep_images=True)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
