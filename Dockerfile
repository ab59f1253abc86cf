# syntax=docker/dockerfile:1
#
# The Infergate gateway. The build stage typechecks the sources and builds them into plain JavaScript
# (`npm run build`: dist/, with the .proto files and the reference servers); the runtime stage holds the
# production dependencies and dist/ (no tsx compile per start, and none of tsx's per-closure naming cost).
#
#   docker build -t infergate .
#   docker run --rm -p 8000:8000 -p 8001:8001 -v "$PWD/config:/etc/infergate:ro" infergate \
#     serve --config /etc/infergate/gateway.yaml
#
# docker-compose.yml builds this image and runs it beside Triton, TorchServe, TF Serving and Redis.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: every dependency (dev ones included) to typecheck the sources, reference servers and tests
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npx tsc --noEmit
RUN npm run build

# ---- runtime: production dependencies only, as the unprivileged `node` user (uid 1000) of the node image
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# Only what runs: the JavaScript build (the gateway, the reference servers `infergate demo` starts, the .proto
# files they load) and the example configs. Copied from the build stage, so the image only builds when the
# typecheck passed.
COPY --from=build /app/dist ./dist
COPY --from=build /app/config ./config
# The default config (`CMD` below); mount your own over /etc/infergate. The batch jobs directories of
# config/compose.yaml exist and belong to `node`, for when nothing is mounted there.
RUN mkdir -p /etc/infergate /data/in /data/out \
  && cp config/gateway.yaml /etc/infergate/gateway.yaml \
  && chown node:node /data/in /data/out

USER node
# KServe v2 REST, KServe v2 gRPC (and the TF Serving / TorchServe front doors on the same listeners).
EXPOSE 8000 8001

# No curl in the slim image: node itself asks /v2/health/ready (200 when ready, 503 while draining).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const p=process.env.INFERGATE_HTTP_PORT||8000;require('node:http').get({host:'127.0.0.1',port:p,path:'/v2/health/ready',timeout:4000},(r)=>{r.resume();process.exit(r.statusCode===200?0:1)}).on('timeout',function(){this.destroy(new Error('timeout'))}).on('error',()=>process.exit(1))"]

ENTRYPOINT ["node", "dist/infergate.js"]
CMD ["serve", "--config", "/etc/infergate/gateway.yaml"]
