# kitter: `docker build -t kitter .`, then `docker run kitter <mode>` (api, worker, all,
# reconcile, emulate-wac-core; default all). Configuration comes from the environment only:
# see .env.example.

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: every dependency, the TypeScript compiler, dist/ ---
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No dependency needs its install script (see the README); running none keeps the build closed.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- runtime: production dependencies and dist/ only, as the unprivileged `node` user ---
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
EXPOSE 3000

# Liveness of the HTTP API, with node itself (the slim image has no curl). It fits the api and
# all modes; a worker serves no HTTP, so docker-compose.yml turns it off for workers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/live') \
.then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# No shell in between: SIGTERM reaches node, which drains the workers before it exits.
ENTRYPOINT ["node", "dist/main.js"]
CMD ["all"]
