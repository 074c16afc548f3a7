"""`python tests/support/services.py postgres URL`: exit 0 if PostgreSQL answers there.

Exit 1 (not there): the PostgreSQL pass is skipped with a message. Exit 2: not there and
CI=true, which fails `make test`.
"""

import os
import sys


def main() -> int:
    kind, url = sys.argv[1], sys.argv[2]
    assert kind == "postgres"
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            return 0
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            print(f"PostgreSQL is not reachable at {url} and CI=true: failing ({exc})", file=sys.stderr)
            return 2
        print(f"PostgreSQL is not reachable at {url}: SKIPPING the PostgreSQL pass ({type(exc).__name__})")
        return 1


if __name__ == "__main__":
    sys.exit(main())
