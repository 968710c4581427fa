# depin-orcha in a container, for docker-compose.yml (Prometheus, Alertmanager and Grafana
# beside it). Build: docker build -t depin-orcha . (from the repository root).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The revision shown in depin_orcha_build_info; pass --build-arg REVISION=$(git rev-parse HEAD).
ARG REVISION=unknown
ENV DEPIN_ORCHA_REVISION=${REVISION}
RUN cargo build --release --locked --bin depin-orcha

FROM debian:bookworm-slim
RUN useradd --system --home-dir /var/lib/depin-orcha --create-home depin-orcha
COPY --from=build /src/target/release/depin-orcha /usr/local/bin/depin-orcha
COPY rules /etc/depin-orcha/rules
USER depin-orcha
WORKDIR /var/lib/depin-orcha
EXPOSE 9817
ENTRYPOINT ["depin-orcha"]
# In a container the listen address must not be loopback, or nothing outside it reaches the
# API. Without --config.file the embedded demo (four simulated nodes) runs.
CMD ["run", "--web.listen-address=0.0.0.0:9817", "--storage.path=/var/lib/depin-orcha/data"]
