"""python -m services.rules"""

import sys

from services.rules.app import SERVICE, create_app
from services.rules.domain import RuleSetError
from services.rules.settings import RulesSettings
from shared.serve import serve


def main() -> None:
    """Build settings from the environment and serve; a bad rule file stops with its reason."""
    settings = RulesSettings()
    try:
        app = create_app(settings)
    except RuleSetError as exc:
        print(f"rules: the rule file is invalid: {exc}", file=sys.stderr)
        sys.exit(2)
    serve(service=SERVICE, settings=settings, port=settings.rules_port, app=app)


if __name__ == "__main__":
    main()
