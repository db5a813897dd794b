# keywarden: multi-stage build. The runtime image has SoftHSM2 for development and tests, served
# by p11-kit's RPC server as its own user (keywarden-hsm) so that libsofthsm2.so and the token are
# never in keywarden's process (DESIGN.md I3); production points `backends.*.module` at the
# vendor's PKCS#11 module mounted into the image.

FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# The workspace package (@keywarden/verify) must be present for npm ci to link it.
COPY packages/verify/package.json packages/verify/
# better-sqlite3 and pkcs11js compile from source here, against the headers this Node ships in
# /usr/local/include/node: no prebuilt download from GitHub, no header download from nodejs.org.
ENV npm_config_nodedir=/usr/local \
    npm_config_build_from_source=true \
    npm_config_update_notifier=false
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY packages/verify packages/verify
COPY src src
COPY migrations migrations
# `npm run build`: the verify package (which the daemon loads through node_modules) first, then tsc.
RUN npm run --silent build && npm prune --omit=dev --no-audit --no-fund --loglevel=error
# Keep the compiled addons (build/Release/*.node), drop their objects and bundled C sources.
RUN find node_modules -path '*/build/Release/*' \( -name obj -o -name obj.target -o -name .deps \) -prune -exec rm -rf {} + \
 && rm -rf node_modules/better-sqlite3/deps node_modules/better-sqlite3/src

FROM node:20-bookworm-slim
# The HSM's user: it alone can read the token (uid/gid 1001; keywarden runs as node, 1000).
RUN groupadd --gid 1001 keywarden-hsm \
 && useradd --uid 1001 --gid keywarden-hsm --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin keywarden-hsm
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 p11-kit p11-kit-modules opensc util-linux ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY --from=build /app/packages/verify/package.json packages/verify/package.json
COPY --from=build /app/packages/verify/dist packages/verify/dist
COPY package.json ./
COPY bin bin
COPY config config
COPY hsm hsm
COPY docker/entrypoint.sh /usr/local/bin/keywarden-entrypoint
COPY docker/keywarden /usr/local/bin/keywarden
RUN chmod 0755 /usr/local/bin/keywarden-entrypoint /usr/local/bin/keywarden bin/keywarden hsm/init-token.sh \
 && mkdir -p /app/data && chown node:keywarden-hsm /app/data && chmod 0710 /app/data
# The entrypoint starts as root only to run two users: it starts the HSM server as keywarden-hsm,
# then becomes node and execs tini (PID 1) and keywarden; no process runs as root after start-up.
# `docker exec ... keywarden` drops to node the same way. Started as a non-root user
# (`--user node`), both run as that user, still as two processes.
USER root
ENV NODE_ENV=production \
    KEYWARDEN_CONFIG=/app/config/default.yaml \
    UV_THREADPOOL_SIZE=16
VOLUME ["/app/data"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/keywarden-entrypoint"]
CMD ["serve", "--host", "0.0.0.0"]
