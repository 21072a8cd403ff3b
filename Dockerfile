# Herald's container image: the gateway built with PostgreSQL support, run as an unprivileged user
# under tini. Build: `docker build -t herald .`. See README, "Running more than one replica", and
# deploy/kubernetes/.
#
# - Multi-stage: the toolchain and sources stay in the build stage; the runtime image is Debian slim
#   with the binary, tini and CA certificates.
# - PID 1 is tini, not herald: herald drains on SIGTERM by itself (tini passes it on), but the `command`
#   agent's programs may leave grandchildren that are re-parented to PID 1, and tini reaps them.
# - `herald run --no-supervise`: the orchestrator restarts a gateway that exits, so the in-process
#   monitor (a second process, there for machines without one) is not wanted here.
# - The home (`HERALD_HOME`) holds records, the control socket and logs; conversations live in the
#   PostgreSQL journal that `[journal] url` names, so the container keeps nothing worth a volume.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald --features postgres \
    && install -m 0755 target/release/herald /usr/local/bin/herald

FROM debian:bookworm-slim
# Versions come from the Debian release the image is built on (pinning them breaks every rebuild
# after a security update).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/herald --create-home herald
COPY --from=build /usr/local/bin/herald /usr/local/bin/herald
COPY deploy/container/entrypoint.sh /usr/local/bin/herald-entrypoint
USER 10001:10001
ENV HERALD_HOME=/var/lib/herald/home
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/herald-entrypoint"]
CMD ["run", "--no-supervise"]
