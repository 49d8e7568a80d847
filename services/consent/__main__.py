"""python -m services.consent"""

from services.consent.app import SERVICE, create_app
from services.consent.settings import ConsentSettings
from shared.serve import serve


def main() -> None:
    """Build settings from the environment and serve."""
    settings = ConsentSettings()
    serve(service=SERVICE, settings=settings, port=settings.consent_port, app=create_app(settings))


if __name__ == "__main__":
    main()
