"""python -m services.notifier"""

from services.notifier.app import SERVICE, create_app
from services.notifier.settings import NotifierSettings
from shared.serve import serve


def main() -> None:
    """Build settings from the environment and serve."""
    settings = NotifierSettings()
    serve(service=SERVICE, settings=settings, port=settings.notifier_port, app=create_app(settings))


if __name__ == "__main__":
    main()
