# A Debian host with systemd as PID 1 and the project installed the way docs/deployment.md tells an operator.
# Built by tests/container/test_systemd_gateway.py from a context holding a clean copy of the repository
# in release/ (the files git tracks, without tests/); CI passes its local Debian base as BASE_IMAGE.
ARG BASE_IMAGE=debian:bookworm
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive container=docker
# systemd as PID 1 (systemd-sysv), dbus for systemctl; curl for the operator's health check; procps for ps.
RUN apt-get update \
    && apt-get install -y --no-install-recommends systemd systemd-sysv dbus curl procps python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    # Units a container has no use for (and that fail without real devices).
    && systemctl mask systemd-udevd.service systemd-udevd-kernel.socket systemd-udevd-control.socket \
        systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
        getty.target console-getty.service systemd-logind.service \
    && systemctl set-default multi-user.target

# docs/deployment.md, "Install the release": the release in /opt/tradingsystem, its own venv beside it.
COPY release/ /opt/tradingsystem/
RUN python3 -m venv /opt/tradingsystem/.venv \
    && /opt/tradingsystem/.venv/bin/pip install --quiet --no-cache-dir /opt/tradingsystem \
    && /opt/tradingsystem/.venv/bin/tradingsystem --help >/dev/null

STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
