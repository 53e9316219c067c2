# syntax=docker/dockerfile:1
# LiveCRUD production image: gunicorn with one gevent-websocket worker (deploy/).
#   docker build -t livecrud .
#   docker run -p 5000:5000 -v livecrud-data:/data livecrud
# See docs/deploy.md and docs/configuration.md.

# --- front-end files: only the Socket.IO client's dist folder is served (/vendor/...) ---
FROM node:20-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error \
 && mkdir -p /out/node_modules/socket.io-client \
 && cp -r node_modules/socket.io-client/dist /out/node_modules/socket.io-client/dist

# --- runtime -------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 livecrud \
 && useradd --system --uid 10001 --gid livecrud --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin livecrud

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
# Every pinned package has a manylinux wheel for 3.11 (psycopg ships its own libpq).
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY --from=assets /out/node_modules ./node_modules
COPY config.py manage.py ./
COPY migrations/ ./migrations/
COPY app/ ./app/
COPY deploy/ ./deploy/

# The instance folder holds the generated secret key and the default SQLite database:
# a volume, so both survive a new container. Set SECRET_KEY (the same everywhere) when
# several containers serve one site.
RUN mkdir -p /data && chown livecrud:livecrud /data && chmod 0755 deploy/entrypoint.sh
ENV FLASK_CONFIG=production \
    INSTANCE_PATH=/data \
    HOST=0.0.0.0 \
    PORT=5000
VOLUME ["/data"]

USER livecrud
EXPOSE 5000

# /login is public and touches the app and its templates.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/login' % os.environ.get('PORT', '5000'), timeout=4)"]

# `flask db upgrade`, then gunicorn (one worker; see deploy/entrypoint.sh). Any other
# command runs instead, e.g. `docker run ... livecrud flask users create ...`.
ENTRYPOINT ["deploy/entrypoint.sh"]
