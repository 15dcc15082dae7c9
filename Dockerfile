# The chat node image (the same topology as `npm run cluster`: see docker-compose.yml).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The workspaces (the client SDK and its React hooks, which the web client is built on, and the
# example app) must be known to `npm ci`; the packages' sources come below. The example is not
# built into the image: only its package.json, so that the lockfile matches.
COPY packages/client/package.json ./packages/client/
COPY packages/react/package.json ./packages/react/
COPY examples/chat/package.json ./examples/chat/
# No lifecycle scripts here: the project's postinstall builds the web client, whose sources are
# copied below (dependencies' install scripts are denied by allowScripts anyway).
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY packages ./packages
COPY services ./services
COPY migrations ./migrations
# Server JavaScript to dist/, the React client to services/web/dist/.
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/services/web/dist ./services/web/dist
# Non-root, nothing written inside the image at run time (read-only root filesystem works).
USER node
EXPOSE 3000
# The port the node listens on (PORT may be set at run time, e.g. with --network host).
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# `node dist/services/chat/src/store/migrate.js` applies migrations (the compose `migrate` service, the k8s Job).
CMD ["node", "dist/services/chat/src/server.js"]
