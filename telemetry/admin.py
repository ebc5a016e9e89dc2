"""Django admin for browsing GPU data."""
