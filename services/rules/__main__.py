"""python -m services.rules"""

from services.rules.app import SERVICE, create_app
from services.rules.settings import RulesSettings
from shared.serve import serve


def main() -> None:
    """Build settings from the environment and serve."""
    settings = RulesSettings()
    serve(service=SERVICE, settings=settings, port=settings.rules_port, app=create_app(settings))


if __name__ == "__main__":
    main()
