#!/usr/bin/env bash
# Set up and run the whole test suite (slow tests included). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
python -m pytest "$@"
