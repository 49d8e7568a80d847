"""python -m services.notifier"""

import sys

from services.notifier.app import SERVICE, create_app
from services.notifier.domain import RoutingError
from services.notifier.settings import NotifierSettings
from shared.serve import serve


def main() -> None:
    """Build settings from the environment and serve; a bad routing file stops with its reason."""
    settings = NotifierSettings()
    try:
        app = create_app(settings)
    except (RoutingError, OSError) as exc:
        print(f"notifier: cannot start: {exc}", file=sys.stderr)
        sys.exit(2)
    serve(service=SERVICE, settings=settings, port=settings.notifier_port, app=app)


if __name__ == "__main__":
    main()
