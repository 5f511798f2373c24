# Build stage: a release binary of rowlock.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
RUN cargo build --release --locked

# Runtime stage: the binary alone; PostgreSQL is its own service (DATABASE_URL).
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home rowlock
COPY --from=build /src/target/release/rowlock /usr/local/bin/rowlock
USER rowlock
ENV ROWLOCK_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["rowlock"]
CMD ["serve"]
