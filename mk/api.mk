# API gateway: the committed OpenAPI schema, and the browser the admin test drives.
TEST_DEPS += chromium

.PHONY: openapi chromium

# Regenerates openapi.yaml from the code; tests/api/test_openapi.py fails when the two differ.
openapi: install
	DEBUG=$${DEBUG:-true} $(PY) manage.py spectacular --validate --fail-on-warn --file openapi.yaml

# Debian's chromium and chromium-driver for tests/admin/test_browser.py, which drives them
# through Selenium (CI runs as root); skipped when both are already there.
chromium:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		apt-get update && apt-get install -y chromium chromium-driver; fi
