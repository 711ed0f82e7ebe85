# The image web, worker, beat and prepare run in docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir .
COPY . .
# Static files are baked into the image; the key is only for this build step.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && useradd --create-home app && mkdir -p /data && chown app /data
USER app
