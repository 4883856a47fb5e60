# One image for every Quanta service; the command picks which one runs:
#   podman run quanta quanta-service crypto|model-registry|monitoring|inference [--flag value ...]
# Build (tools/container/README.md): tools/container/build-image.sh, or by hand
#   podman --runtime runc build --pull=never --network host \
#     --secret id=npm-ca,src=/etc/ssl/certs/ca-certificates.crt -t quanta:dev .
# The base is Debian bookworm with Node.js 20 and tini, made locally by
# tools/container/make-base-image.sh; BASE_IMAGE may name another with node, npm and tini on PATH.
ARG BASE_IMAGE=localhost/quanta-base:bookworm-node20

# Only the manifests that `npm ci` reads, with one fixed mtime: the layers that install from them
# are reused from the build cache until a manifest's content changes.
FROM ${BASE_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN find . -type f ! -path './package.json' ! -path './package-lock.json' ! -path './.npmrc' \
      ! -regex '\./\(libs\|services\|tools\|tests\)/[^/]*/package\.json' -delete \
 && find . -mindepth 1 -type d -empty -delete \
 && find . -exec touch -h -d @0 {} +

# Every dependency from the lock file (the compiler and Nx included). .npmrc keeps
# onnxruntime-node-install=skip: the CPU binary ships inside the npm package. The optional npm-ca
# secret is a CA bundle for a registry behind a TLS-inspecting proxy; it is not kept in any layer.
FROM ${BASE_IMAGE} AS deps
WORKDIR /src
COPY --from=manifests /src ./
RUN --mount=type=secret,id=npm-ca --mount=type=cache,id=quanta-npm,target=/root/.npm \
    if [ -s /run/secrets/npm-ca ]; then export npm_config_cafile=/run/secrets/npm-ca; fi \
 && npm ci --no-audit --no-fund --loglevel=warn

# The four services and the libs they import, compiled to dist/ by each package's `build`.
FROM deps AS build
COPY . .
RUN NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false npm_config_loglevel=error \
    npx nx run-many -t build -p crypto model-registry monitoring inference --output-style=static \
 && mkdir -p /out \
 && for pkg in libs/* services/*; do \
      [ -d "$pkg/dist" ] || continue; \
      mkdir -p "/out/$pkg" && cp "$pkg/package.json" "/out/$pkg/" && cp -r "$pkg/dist" "/out/$pkg/"; \
    done \
 && find /out -name '*.d.ts' -delete -o -name '*.map' -delete -o -name '.tsbuildinfo' -delete \
 && cp package.json /out/

# Production dependencies of the four services only (not those of tools/ and tests/), from the
# lock file again, through the same npm cache; onnxruntime-node keeps only this platform's binary.
FROM ${BASE_IMAGE} AS prod-deps
WORKDIR /src
COPY --from=manifests /src ./
RUN --mount=type=secret,id=npm-ca --mount=type=cache,id=quanta-npm,target=/root/.npm \
    if [ -s /run/secrets/npm-ca ]; then export npm_config_cafile=/run/secrets/npm-ca; fi \
 && npm ci --omit=dev --no-audit --no-fund --loglevel=warn \
      -w services/crypto -w services/model-registry -w services/monitoring -w services/inference \
 && ort=node_modules/onnxruntime-node/bin/napi-v6 \
 && [ -d "$ort/linux/$(node -p process.arch)" ] \
 && find "$ort" -mindepth 2 -maxdepth 2 -type d ! -path "$ort/linux/$(node -p process.arch)" -exec rm -rf {} + \
 && rm -rf node_modules/.cache node_modules/.package-lock.json

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 quanta \
 && useradd --uid 10001 --gid quanta --home-dir /var/lib/quanta --no-create-home \
      --shell /usr/sbin/nologin quanta \
 && install -d -o quanta -g quanta -m 0700 /var/lib/quanta
WORKDIR /opt/quanta
COPY --from=prod-deps /src/node_modules ./node_modules
COPY --from=build /out/ ./
COPY tools/container/quanta-service /usr/local/bin/quanta-service
# Container defaults: data in the volume, every listener on every interface, the inference
# replicas serve the registry's deployments. Each can be overridden with -e or a flag.
ENV NODE_ENV=production \
    QUANTA_HOME=/var/lib/quanta \
    QUANTA_CRYPTO_HOST=0.0.0.0 \
    QUANTA_REGISTRY_HOST=0.0.0.0 \
    QUANTA_MONITORING_HOST=0.0.0.0 \
    QUANTA_MONITORING_HTTP_HOST=0.0.0.0 \
    QUANTA_INFERENCE_HOST=0.0.0.0 \
    QUANTA_INFERENCE_HTTP_HOST=0.0.0.0 \
    QUANTA_INFERENCE_WATCH=true
VOLUME /var/lib/quanta
# registry 9001, crypto 9002, monitoring 9003 (gRPC) and 9400 (HTTP), inference 8000 (REST),
# 8001 (gRPC) and 8002 (Prometheus metrics)
EXPOSE 9001 9002 9003 9400 8000 8001 8002
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "quanta-service"]
