FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TEMPLATES_DIR=/app/templates
WORKDIR /app
# Dependencies exactly as locked (hash-checked), in their own layer so a code change does not reinstall them.
COPY requirements ./requirements
RUN pip install --no-cache-dir --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY templates ./templates
RUN pip install --no-cache-dir --no-deps . && useradd --system --home /app aftercare && chown -R aftercare /app
USER aftercare
EXPOSE 8000
CMD ["aftercare", "web", "--host", "0.0.0.0", "--port", "8000"]
