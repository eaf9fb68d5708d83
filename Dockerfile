# minicrm: multi-stage build. The image runs `minicrm serve` and needs
# DATABASE_URL and JWT_SECRET (see docker-compose.yml and README.md).

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependencies first, so editing src/ or sql/ does not rebuild them: compile the
# dependency graph against stub sources (build.rs reads sql/, so it is stubbed too).
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > build.rs \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf build.rs src

# The real sources. build.rs embeds sql/functions and sql/policies; refinery embeds
# sql/migrations. Touch them so cargo never mistakes the stubs' output for current.
COPY build.rs ./
COPY sql ./sql
COPY src ./src
RUN touch build.rs src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && strip target/release/minicrm

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 minicrm \
 && useradd --system --uid 10001 --gid minicrm --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin minicrm

COPY --from=builder /build/target/release/minicrm /usr/local/bin/minicrm

USER 10001:10001
WORKDIR /tmp
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["minicrm"]
CMD ["serve"]
