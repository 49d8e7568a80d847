"""python -m services.ingest"""

import sys

from services.ingest.app import SERVICE, create_app
from services.ingest.errors import IngestConfigurationError
from services.ingest.settings import IngestSettings
from shared.serve import serve


def main() -> None:
    """Build settings from the environment and serve; an unusable setting stops with its reason."""
    settings = IngestSettings()
    try:
        app = create_app(settings)
    except IngestConfigurationError as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        sys.exit(2)
    serve(service=SERVICE, settings=settings, port=settings.ingest_port, app=app)


if __name__ == "__main__":
    main()
