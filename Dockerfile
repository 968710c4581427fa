# depin-orcha's container image, FROM scratch: the binary, the shared libraries it links
# (glibc), the shipped rules and a passwd entry, laid out by scripts/container-root. No base
# image is pulled, so it builds where no registry is reachable:
#   scripts/container-root                       # target/container-root from a release build
#   podman build -f Dockerfile -t depin-orcha target/container-root
#   podman run --rm -p 127.0.0.1:9817:9817 depin-orcha
# (docker build works the same.) The revision and date shown by --version and build_info are
# those of the binary: stamp them when building it (scripts/release does).
FROM scratch
COPY . /
# The storage directory belongs to the user the image runs as.
COPY --chown=65532:65532 var/lib/depin-orcha /var/lib/depin-orcha
USER 65532:65532
WORKDIR /var/lib/depin-orcha
EXPOSE 9817
VOLUME /var/lib/depin-orcha
ENTRYPOINT ["/usr/local/bin/depin-orcha"]
# In a container the listen address must not be loopback, or nothing outside it reaches the
# API. Without --config.file the embedded demo (four simulated nodes) runs; mount a config at
# /etc/depin-orcha/depin-orcha.yml and add --config.file=/etc/depin-orcha/depin-orcha.yml.
CMD ["run", "--web.listen-address=0.0.0.0:9817", "--storage.path=/var/lib/depin-orcha", "--rules.file=/etc/depin-orcha/rules/prometheus/*.yml", "--optimization.rules-file=/etc/depin-orcha/rules/optimization.yml"]
