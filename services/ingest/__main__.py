"""python -m services.ingest"""

from services.ingest.app import SERVICE, create_app
from services.ingest.settings import IngestSettings
from shared.serve import serve


def main() -> None:
    """Build settings from the environment and serve."""
    settings = IngestSettings()
    serve(service=SERVICE, settings=settings, port=settings.ingest_port, app=create_app(settings))


if __name__ == "__main__":
    main()
