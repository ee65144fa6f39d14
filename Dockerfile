# tgdav: Telegram channels as a WebDAV drive. Configure it with TGDAV_* variables, keep /state.
#   docker build -t tgdav .
#   docker run --rm -it -v tgdav-state:/state -e TGDAV_API_ID=... -e TGDAV_API_HASH=... tgdav tgdav login
#   docker run -d -p 8080:8080 -v tgdav-state:/state -e TGDAV_API_ID=... -e TGDAV_API_HASH=... \
#              -e TGDAV_USERS=alice:secret tgdav
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md /src/
COPY tgdav /src/tgdav
RUN pip install /src && rm -rf /src \
    && useradd --uid 10001 --user-group --home-dir /state --shell /usr/sbin/nologin tgdav \
    && install -d -m 0700 -o tgdav -g tgdav /state

# Sessions, the file->DC map and the cache live in the volume, never in the image.
# The server listens on every interface of the container, so serve insists on TGDAV_USERS
# (or an explicit TGDAV_AUTH=none).
ENV TGDAV_STATE_DIR=/state \
    TGDAV_HOST=0.0.0.0 \
    TGDAV_PORT=8080
VOLUME ["/state"]
WORKDIR /state
USER tgdav
EXPOSE 8080

# Healthy when the WebDAV server answers HTTP at all: 401 (auth required) counts, 5xx does not.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD python -c "exec('import os, urllib.request as r, urllib.error as e\ntry: r.urlopen(\'http://127.0.0.1:%s/\' % os.environ.get(\'TGDAV_PORT\', \'8080\'), timeout=5)\nexcept e.HTTPError as x: raise SystemExit(x.code >= 500)')"

CMD ["tgdav", "serve"]
