# streamwatch as a sidecar: `docker build -t streamwatch .`
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamwatch ./streamwatch
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/streamwatch --create-home streamwatch

USER streamwatch
ENV STREAMWATCH_STATE__PATH=/var/lib/streamwatch/state.sqlite \
    STREAMWATCH_SERVER__HOST=0.0.0.0
VOLUME ["/var/lib/streamwatch"]
EXPOSE 9108
ENTRYPOINT ["streamwatch"]
CMD ["run", "--env-file", "/etc/streamwatch/streamwatch.env"]
