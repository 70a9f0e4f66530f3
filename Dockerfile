# The one image for the controller and the kmcp-adapter sidecar: a slim Python plus the single zipapp file.
# Build the zipapp first: python build.py  (writes dist/kmcp)
FROM python:3.12-slim

# shiv unpacks the zipapp's dependencies once; doing it here lets pods run with a read-only root filesystem.
ENV SHIV_ROOT=/opt/kmcp/shiv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY dist/kmcp /usr/local/bin/kmcp
RUN chmod 0755 /usr/local/bin/kmcp \
 && kmcp --version \
 && chmod -R a+rX /opt/kmcp \
 && printf '#!/bin/sh\nexec kmcp controller "$@"\n' > /manager \
 && chmod 0755 /manager

# Non-root, numeric so runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["kmcp"]
CMD ["--help"]
