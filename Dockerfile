# skiplock in a small image: a build stage compiles the release binary from the lockfile, and
# the runtime stage holds that binary and nothing else (glibc, CA certificates for `https`
# processors, a non-root user: distroless/cc, no shell).
#
#   docker build -t skiplock .
#   docker run --rm skiplock --help
#
# The build is offline-friendly: dependencies are fetched in their own layer (`cargo fetch
# --locked`, exactly the lockfile's versions) and everything after it builds with --offline.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, against stub sources, so that editing the code reuses both the fetched
# crates and their compiled layer.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src migrations \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo fetch --locked \
 && cargo build --locked --offline --release --bin skiplock \
 && rm -rf src

COPY src ./src
COPY migrations ./migrations
# Touch the real sources so cargo rebuilds them over the stubs' artefacts.
RUN touch src/main.rs src/lib.rs \
 && cargo build --locked --offline --release --bin skiplock \
 && ./target/release/skiplock --version

# Debian 12 (bookworm) like the build stage, so the binary finds the glibc it was linked for.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/skiplock /usr/local/bin/skiplock
# The embedded SQLite default (`sqlite://skiplock.db`) lands in the user's writable home.
WORKDIR /home/nonroot
# distroless's `nonroot` user, by number so that every runtime resolves it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/skiplock"]
CMD ["--help"]
