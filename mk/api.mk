# API gateway: the committed OpenAPI schema, and the browser the admin test drives.
TEST_DEPS += chromium

.PHONY: openapi chromium

# Regenerates openapi.yaml from the code; tests/api/test_openapi.py fails when the two differ.
openapi: install
	DEBUG=$${DEBUG:-true} $(PY) manage.py spectacular --validate --fail-on-warn --file openapi.yaml

# Debian's chromium for tests/admin/test_browser.py (CI runs as root); skipped when already there.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then apt-get update && apt-get install -y chromium; fi
