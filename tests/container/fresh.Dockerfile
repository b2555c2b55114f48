# A machine that has never seen the project: Debian 12 with Python (and its venv module), make and a clone
# of the repository, for root in /root/tradingsystem and for an ordinary user in /home/trader/tradingsystem.
# Built by tests/container/test_fresh_machine.py; CI passes its local Debian base as BASE_IMAGE.
ARG BASE_IMAGE=debian:bookworm
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv make \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --shell /bin/bash trader

COPY clone/ /root/tradingsystem/
COPY --chown=trader:trader clone/ /home/trader/tradingsystem/

CMD ["sleep", "infinity"]
