# The operator's image, for machines with a container engine and registry
# access. scripts/build-image.sh builds the same final image without one
# (what CI does): the binary with the glibc libraries it links, user 65532,
# and the project's plugins under /plugins.
#
#   docker build -t wasm-operator:dev .
#   docker run --rm wasm-operator:dev --version

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN rustup target add wasm32-wasip2 \
 && cargo build --release --locked -p wasm-operator \
 && scripts/build-plugins.sh

# distroless/cc: glibc, libgcc and a nonroot user (65532), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/wasm-operator /wasm-operator
COPY --from=build /src/target/plugins/example-plugin.wasm /src/target/plugins/postgres-server-plugin.wasm /src/target/plugins/postgres-database-plugin.wasm /src/target/plugins/postgres-user-plugin.wasm /src/target/plugins/postgres-inject-plugin.wasm /plugins/
USER 65532:65532
ENTRYPOINT ["/wasm-operator"]
CMD ["run"]
